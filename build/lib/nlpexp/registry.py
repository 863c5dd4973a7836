"""Model registry: versioned copies of trained models, loadable as `model.name_or_path=registry:<name>@<alias>`.

    nlpexp registry register <run_dir> --name sbert-nli      # -> models/sbert-nli/v<N>/
    nlpexp registry list
    nlpexp registry show sbert-nli@best

Layout: <registry>/<name>/v<N>/{model/, config.yaml, metrics.json, source.json}. Aliases: `latest`
(newest version), `best` (best value of the source run's optimized_metric), `v<N>`. A version appears
only complete: it is copied into a hidden temporary folder and renamed into place.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from nlpexp.config import PROJECT_ROOT
from nlpexp.errors import NlpexpError

PREFIX = "registry:"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def registry_dir() -> Path:
    return Path(os.environ.get("NLPEXP_REGISTRY_DIR", PROJECT_ROOT / "models"))


def versions(name: str, root: Path | None = None) -> list[int]:
    folder = (root or registry_dir()) / name
    found = [int(p.name[1:]) for p in folder.glob("v*") if p.is_dir() and p.name[1:].isdigit()] if folder.is_dir() \
        else []
    return sorted(found)


def register(run_dir: Path, name: str, root: Path | None = None, direction: str | None = None) -> Path:
    """Copy `run_dir/best_model` with the run's config and metrics into the next version of `name`
    (`direction` of its optimized_metric: maximize unless given; a sweep knows its study's)."""
    root = root or registry_dir()
    run_dir = Path(run_dir).resolve()
    if not _NAME.match(name):
        raise NlpexpError(f"registry name {name!r}: use letters, digits, '.', '_' or '-'")
    model = run_dir / "best_model"
    if not model.is_dir() or not (run_dir / "metrics.json").is_file():
        raise NlpexpError(f"{run_dir} has no best_model/ and metrics.json: register the run dir of a finished run")
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").is_file() else {}
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
    try:
        shutil.copytree(model, staging / "model")
        shutil.copy2(run_dir / "metrics.json", staging / "metrics.json")
        if (run_dir / "config.yaml").is_file():
            shutil.copy2(run_dir / "config.yaml", staging / "config.yaml")
        source = {"run_dir": str(run_dir), "optimized_metric": (config or {}).get("optimized_metric"),
                  "direction": direction or (config or {}).get("direction", "maximize")}
        (staging / "source.json").write_text(json.dumps(source, indent=2))
        with open(folder / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            target = folder / f"v{(versions(name, root) or [0])[-1] + 1}"
            os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def resolve(reference: str, root: Path | None = None) -> Path:
    """`registry:<name>[@latest|@best|@v<N>]` -> the version's model folder."""
    root = root or registry_dir()
    name, _, alias = reference.removeprefix(PREFIX).partition("@")
    alias = alias or "latest"
    known = versions(name, root)
    if not known:
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
    return root / name / f"v{version}" / "model"


def _best_version(name: str, known: list[int], root: Path) -> int:
    def score(version: int) -> float:
        folder = root / name / f"v{version}"
        source = json.loads((folder / "source.json").read_text())
        metric = source.get("optimized_metric")
        value = json.loads((folder / "metrics.json").read_text()).get(metric)
        if value is None:
            return float("-inf")
        return value if source.get("direction", "maximize") == "maximize" else -value

    return max(known, key=lambda v: (score(v), v))


def describe(name: str, version: int, root: Path) -> dict:
    folder = root / name / f"v{version}"
    return {"name": name, "version": f"v{version}", "path": str(folder / "model"),
            **json.loads((folder / "source.json").read_text()),
            "metrics": json.loads((folder / "metrics.json").read_text())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nlpexp registry", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=None, help="registry folder (default: models/)")
    sub = parser.add_subparsers(dest="command", required=True)
    reg = sub.add_parser("register", help="register a run's best model as the next version")
    reg.add_argument("run_dir", type=Path)
    reg.add_argument("--name", required=True)
    sub.add_parser("list", help="every model and its versions")
    show = sub.add_parser("show", help="one version: NAME[@latest|@best|@vN]")
    show.add_argument("reference")
    args = parser.parse_args(argv)
    root = args.root or registry_dir()
    try:
        if args.command == "register":
            print(register(args.run_dir, args.name, root))
        elif args.command == "list":
            for folder in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
                print(f"{folder.name}: {', '.join(f'v{v}' for v in versions(folder.name, root))}")
        else:
            path = resolve(args.reference, root)
            name, version = path.parent.parent.name, int(path.parent.name[1:])
            print(json.dumps(describe(name, version, root), indent=2))
    except NlpexpError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
