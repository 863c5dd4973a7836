"""`nlpexp registry`: versioned copies of trained models (nlpexp.model.registry), loadable as
`model.name_or_path=registry:<name>@<alias>`.

    nlpexp registry register <run_dir> --name sbert-nli      # -> <paths.registry_dir>/sbert-nli/v<N>/
    nlpexp registry list
    nlpexp registry show sbert-nli@best
    nlpexp registry publish sbert-nli@best --alias champion  # to the MLflow Model Registry (nlpexp.registry_mlflow)

Aliases: `latest` (newest version), `best` (best value of the source run's optimized_metric), `v<N>`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nlpexp import NlpexpError
from nlpexp.cli import ArgumentParser, run_cli
from nlpexp.config import default_paths
from nlpexp.model.registry import PREFIX, describe, model_folder, register, resolve, versions  # noqa: F401


def registry_dir() -> Path:
    """paths.registry_dir of the composed config (env NLPEXP_REGISTRY_DIR, else models/): the commands' default."""
    return Path(default_paths()["registry_dir"])


def main(argv: list[str] | None = None) -> int:
    from nlpexp import registry_mlflow

    parser = ArgumentParser(prog="nlpexp registry", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=None,
                        help="registry folder (default: paths.registry_dir, models/)")
    sub = parser.add_subparsers(dest="command", required=True)
    reg = sub.add_parser("register", help="register a run's best model as the next version")
    reg.add_argument("run_dir", type=Path)
    reg.add_argument("--name", required=True)
    sub.add_parser("list", help="every model and its versions")
    show = sub.add_parser("show", help="one version: NAME[@latest|@best|@vN]")
    show.add_argument("reference")
    registry_mlflow.add_parser(sub)
    args = parser.parse_args(argv)
    root = args.root or registry_dir()
    try:
        if args.command == "register":
            print(register(args.run_dir, args.name, root))
        elif args.command == "publish":
            print(registry_mlflow.run_publish(args, resolve(args.reference, root)))
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
    raise SystemExit(run_cli(main))
