"""The model registry's store: versioned copies of trained models in a folder, and what `registry:<name>@<alias>`
names (`nlpexp registry`, nlpexp.registry, is its command line).

Layout: <registry>/<name>/v<N>/{model/, config.yaml, metrics.json, source.json}, and <registry>/<name>/best, a
link to the best version (a sweep's best model: models/<study>/best/model). Aliases: `latest`
(newest version), `best` (best value of the source run's optimized_metric), `v<N>`. A version appears
only complete: it is copied into a hidden temporary folder and renamed into place. Copies never follow a
symlink, and a version is resolved only when no part of its path, at any depth, is one (nlpexp.copies).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import yaml

from nlpexp import NlpexpError, first_line, registry_mlflow
from nlpexp.copies import copy_file, copy_tree, refuse_links
from nlpexp.model.weights import BUNDLED_PREFIX, bundled_path

PREFIX = "registry:"
REGISTER = "registry register"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def model_folder(name: str, root: Path) -> Path:
    """<root>/<name>, for a valid name only, and never outside the registry (no '/', '..', absolute
    path, or symlink out of it)."""
    root = Path(root)
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
        raise NlpexpError(f"registry name {name!r}: use letters, digits, '.', '_' or '-' (no '/', no '..')")
    folder = root / name
    if not folder.resolve().is_relative_to(root.resolve()):
        raise NlpexpError(f"registry name {name!r} leads outside the registry {root}")
    if folder.is_symlink():
        raise NlpexpError(f"registry name {name!r}: {folder} is a symlink; the registry holds no links")
    return folder


def versions(name: str, root: Path) -> list[int]:
    return sorted(int(p.name[1:]) for p in model_folder(name, root).glob("v*") if p.is_dir() and p.name[1:].isdigit())


def register(run_dir: Path, name: str, root: Path, direction: str | None = None, model: Path | None = None) -> Path:
    """Copy `run_dir/best_model` with the run's config and metrics into the next version of `name` in the registry
    `root` (`direction` of its optimized_metric: maximize unless given; a sweep knows its study's). An eval-only
    run has no best_model/: `model` is the folder it evaluated, as the person names it (`--model`)."""
    run_dir = Path(run_dir).resolve()
    folder = model_folder(name, root)
    config_file = run_dir / "config.yaml"
    has_config = config_file.exists() or config_file.is_symlink()
    config = _run_config(config_file) if has_config else {}
    model = _model_of(run_dir, config, root, model)
    for source in (model, run_dir / "metrics.json"):
        refuse_links(source, REGISTER)  # all of it checked before anything is created
    read_mapping(run_dir / "metrics.json")  # what `show` and `@best` read later
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
    try:
        copy_tree(model, staging / "model", REGISTER)
        copy_file(run_dir / "metrics.json", staging / "metrics.json", REGISTER)
        if has_config:
            copy_file(config_file, staging / "config.yaml", REGISTER)
        source = {"run_dir": str(run_dir), "optimized_metric": config.get("optimized_metric"),
                  "direction": direction or config.get("direction", "maximize")}
        (staging / "source.json").write_text(json.dumps(source, indent=2))
        with open(folder / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            target = folder / f"v{(versions(name, root) or [0])[-1] + 1}"
            os.rename(staging, target)
            link_best(name, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def read_mapping(path: Path) -> dict:
    """The mapping a run's or a version's config.yaml, metrics.json or source.json holds. These files come from
    others (docs/security.md): anything else is one NlpexpError naming the file. Opened without following a link."""
    try:
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW)) as file:
            text = file.read()
        value = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:  # (ValueError: JSONDecodeError, UnicodeDecodeError)
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise NlpexpError(f"{path} is not valid {kind} ({first_line(err)}); it is not a file nlpexp wrote") from None
    if value is None and path.suffix != ".json":  # an empty config.yaml: no settings
        return {}
    if not isinstance(value, dict):
        raise NlpexpError(f"{path} holds a {type(value).__name__}, not a mapping of keys to values; it is not a "
                          f"file nlpexp wrote")
    return value


def _run_config(config_file: Path) -> dict:
    """A run's config.yaml, with the settings register reads checked: one NlpexpError naming the first bad one."""
    refuse_links(config_file, REGISTER)  # before reading it
    config = read_mapping(config_file)
    _expect(config_file, "model", config.get("model"), dict)
    _expect(config_file, "model.name_or_path", (config.get("model") or {}).get("name_or_path"), str)
    _expect(config_file, "optimized_metric", config.get("optimized_metric"), str)
    return config


def _expect(file: Path, key: str, value, kind: type) -> None:
    if value is not None and not isinstance(value, kind):
        what = "a mapping of settings" if kind is dict else "a string"
        raise NlpexpError(f"{file}: {key} must be {what} or null, got {value!r}; it is not the config of an nlpexp run")


def _model_of(run_dir: Path, config: dict, root: Path, given: Path | None) -> Path:
    """The folder to register: the run's best_model/, or for an eval-only run the model it evaluated."""
    if not (run_dir / "metrics.json").is_file():
        raise NlpexpError(f"{run_dir} has no metrics.json: it is not the run dir of a finished run "
                          f"(`nlpexp runs --status failed` says why a run ended)")
    if (run_dir / "best_model").is_dir() or (run_dir / "best_model").is_symlink():
        if given is not None:
            raise NlpexpError(f"{run_dir} has a best_model/ of its own, which register copies: --model is for an "
                              f"eval-only run only; leave it out")
        return run_dir / "best_model"  # (a symlink: register refuses it, with one line)
    if config.get("mode") not in ("eval", "test"):
        raise NlpexpError(f"{run_dir} has no best_model/: register the run dir of a finished training run")
    return Path(given) if given is not None else _evaluated(run_dir, config.get("model") or {}, root)


def _evaluated(run_dir: Path, model: dict, root: Path) -> Path:
    """The model an eval-only run's config names, where that cannot be an arbitrary local folder: the config is
    data, and a `name_or_path: ~/.ssh` would be copied into the registry (and published). Allowed: a bundled:
    model, and a registry:<name>@<alias> of `root`, the registry the command was given (not the run's)."""
    source = model.get("name_or_path")
    if source is None:
        raise NlpexpError(f"{run_dir} is an eval-only run of model {model.get('name')!r}, which is a random-init "
                          f"model: there is no model folder to register")
    if source.startswith(BUNDLED_PREFIX):
        return Path(bundled_path(source.removeprefix(BUNDLED_PREFIX)))
    if source.startswith(PREFIX) and not source.removeprefix(PREFIX).startswith(registry_mlflow.SCHEME):
        return resolve(source, Path(root))
    raise NlpexpError(f"{run_dir} is an eval-only run of {source!r}: a run's config may name only a bundled:<name> "
                      f"or registry:<name>@<alias> model to register; name the folder it evaluated yourself with "
                      f"--model <folder>")


def link_best(name: str, root: Path) -> Path:
    """<root>/<name>/best -> the best version's folder: a path that stays put (`<root>/<name>/best/model`) while
    versions come. Replaced atomically, so that a reader never finds it missing."""
    link = root / name / "best"
    temporary = root / name / f".best-{os.getpid()}"
    temporary.unlink(missing_ok=True)
    os.symlink(f"v{_best_version(name, versions(name, root), root)}", temporary)
    os.replace(temporary, link)
    return link


def resolve(reference: str, root: Path) -> Path:
    """`registry:<name>[@latest|@best|@v<N>]` -> the version's model folder in the registry `root` (the run's
    paths.registry_dir; `registry:mlflow:...`: MLflow's)."""
    if reference.removeprefix(PREFIX).startswith("mlflow:"):
        return registry_mlflow.resolve(reference.removeprefix(PREFIX), root)
    name, _, alias = reference.removeprefix(PREFIX).partition("@")
    alias = alias or "latest"
    if not (known := versions(name, root)):
        raise NlpexpError(f"registry has no model {name!r} in {root}; see `nlpexp registry list`")
    if alias == "latest":
        version = known[-1]
    elif alias == "best":
        version = _best_version(name, known, root)
    elif re.fullmatch(r"v\d+", alias) and int(alias[1:]) in known:
        version = int(alias[1:])
    else:
        raise NlpexpError(f"registry model {name!r} has no alias {alias!r}; use latest, best or one of "
                          f"{', '.join(f'v{v}' for v in known)}")
    folder = model_folder(name, root) / f"v{version}"
    refuse_links(folder, f"registry:{name}@{alias}", below=Path(root))
    return folder / "model"


def _best_version(name: str, known: list[int], root: Path) -> int:
    return max(known, key=lambda v: (_score(model_folder(name, root) / f"v{v}", name, root), v))


def _score(folder: Path, name: str, root: Path) -> float:
    """A version's value of its source run's optimized_metric, higher is better (-inf: it has none)."""
    refuse_links(folder, f"registry:{name}@best", below=Path(root))  # before reading what it holds
    source, metrics = _entry(folder)
    value = metrics.get(source.get("optimized_metric"))
    if value is None:
        return float("-inf")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise NlpexpError(f"{folder / 'metrics.json'}: {source['optimized_metric']} must be a number, got {value!r}")
    return value if source.get("direction", "maximize") == "maximize" else -value


def _entry(folder: Path) -> tuple[dict, dict]:
    """A version's source.json and metrics.json (data: a registry can be handed over), checked."""
    source = read_mapping(folder / "source.json")
    if not isinstance(source.get("optimized_metric"), str | None):
        raise NlpexpError(f"{folder / 'source.json'}: optimized_metric must be a string or null, got "
                          f"{source['optimized_metric']!r}; it is not a file nlpexp wrote")
    return source, read_mapping(folder / "metrics.json")


def describe(name: str, version: int, root: Path) -> dict:
    folder = model_folder(name, root) / f"v{version}"
    source, metrics = _entry(folder)
    return {"name": name, "version": f"v{version}", "path": str(folder / "model"), **source, "metrics": metrics}
