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

from nlpexp import NlpexpError, registry_mlflow
from nlpexp.copies import copy_file, copy_tree, refuse_links
from nlpexp.model.weights import BUNDLED_PREFIX, bundled_path
from nlpexp.paths import hub_cached

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


def register(run_dir: Path, name: str, root: Path, direction: str | None = None) -> Path:
    """Copy `run_dir/best_model` with the run's config and metrics into the next version of `name` in the registry
    `root` (`direction` of its optimized_metric: maximize unless given; a sweep knows its study's)."""
    run_dir = Path(run_dir).resolve()
    folder = model_folder(name, root)
    config_file = run_dir / "config.yaml"
    has_config = config_file.exists() or config_file.is_symlink()
    if has_config:
        refuse_links(config_file, REGISTER)  # before reading it
    config = (yaml.safe_load(config_file.read_text()) if has_config else None) or {}
    model = _model_of(run_dir, config, root)
    for source in (model, run_dir / "metrics.json"):
        refuse_links(source, REGISTER)  # all of it checked before anything is created
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


def _model_of(run_dir: Path, config: dict, root: Path) -> Path:
    """The folder to register: the run's best_model/, or for an eval-only run the local model it evaluated."""
    if not (run_dir / "metrics.json").is_file():
        raise NlpexpError(f"{run_dir} has no metrics.json: it is not the run dir of a finished run "
                          f"(`nlpexp runs --status failed` says why a run ended)")
    if (run_dir / "best_model").is_dir() or (run_dir / "best_model").is_symlink():
        return run_dir / "best_model"  # (a symlink: register refuses it, with one line)
    model = config.get("model") or {}
    if config.get("mode") not in ("eval", "test"):
        raise NlpexpError(f"{run_dir} has no best_model/: register the run dir of a finished training run")
    source = model.get("name_or_path")
    folder = _local_folder(source, (config.get("paths") or {}).get("registry_dir") or root) if source else None
    if folder is None or not folder.is_dir():
        raise NlpexpError(f"{run_dir} is an eval-only run of model {model.get('name')!r}, which is "
                          f"{'a random-init model' if not source else f'not a local folder ({source})'}: "
                          f"there is no model folder to register")
    return folder


def _local_folder(source: str, root: Path) -> Path | None:
    """The folder a model.name_or_path names (bundled:, registry:, a folder, a cached Hub id), if any."""
    if source.startswith(BUNDLED_PREFIX):
        return Path(bundled_path(source.removeprefix(BUNDLED_PREFIX)))
    if source.startswith(PREFIX):
        return resolve(source, Path(root))
    return Path(source).expanduser() if Path(source).expanduser().is_dir() else hub_cached(source)


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
    def score(version: int) -> float:
        folder = model_folder(name, root) / f"v{version}"
        refuse_links(folder, f"registry:{name}@best", below=Path(root))  # before reading what it holds
        source = json.loads((folder / "source.json").read_text())
        value = json.loads((folder / "metrics.json").read_text()).get(source.get("optimized_metric"))
        if value is None:
            return float("-inf")
        return value if source.get("direction", "maximize") == "maximize" else -value

    return max(known, key=lambda v: (score(v), v))


def describe(name: str, version: int, root: Path) -> dict:
    folder = model_folder(name, root) / f"v{version}"
    return {"name": name, "version": f"v{version}", "path": str(folder / "model"),
            **json.loads((folder / "source.json").read_text()),
            "metrics": json.loads((folder / "metrics.json").read_text())}
