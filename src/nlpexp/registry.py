"""`nlpexp registry`: versioned copies of trained models (nlpexp.model.registry), loadable as
`model.name_or_path=registry:<name>@<alias>`.

    nlpexp registry register <run_dir> --name sbert-nli      # -> <paths.registry_dir>/sbert-nli/v<N>/
    nlpexp registry register <eval run_dir> --name mine --model <the folder it evaluated>
    nlpexp registry list
    nlpexp registry show sbert-nli@best
    nlpexp registry publish sbert-nli@best --alias champion  # to the MLflow Model Registry (nlpexp.registry_mlflow)

Aliases: `latest` (newest version), `best` (best value of the source run's optimized_metric), `v<N>`.
An eval-only run (mode=eval) has no best_model/: register takes the model its config.yaml names only when that is
`bundled:<name>` or `registry:<name>@<alias>` (looked up in this command's registry, --root); a run dir is data
(docs/security.md), so any other folder is the one you name with --model.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from nlpexp.cli import ArgumentParser, command, existing_dir
from nlpexp.config import default_paths
from nlpexp.model.registry import PREFIX, describe, model_folder, register, resolve, versions  # noqa: F401


def registry_dir() -> Path:
    """paths.registry_dir of the composed config (env NLPEXP_REGISTRY_DIR, else models/): the commands' default."""
    return Path(default_paths()["registry_dir"])


@command
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="nlpexp registry", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=None,
                        help="registry folder (default: paths.registry_dir, models/)")
    sub = parser.add_subparsers(dest="command", required=True)
    reg = sub.add_parser("register", help="register a run's best model as the next version")
    reg.add_argument("run_dir", type=Path)
    reg.add_argument("--name", required=True)
    reg.add_argument("--model", type=existing_dir, default=None,
                     help="for an eval-only run: the model folder it evaluated (its config may name only a "
                          "bundled: or registry: model)")
    sub.add_parser("list", help="every model and its versions")
    sub.add_parser("show", help="one version: NAME[@latest|@best|@vN]").add_argument("reference")
    publish = sub.add_parser("publish", help="publish a version to the MLflow Model Registry "
                                             "(MLFLOW_TRACKING_URI): NAME[@latest|@best|@vN]")
    publish.add_argument("reference")
    publish.add_argument("--as", dest="mlflow_name", help="the MLflow model's name (default: NAME)")
    publish.add_argument("--alias", help="an MLflow alias for the new version, e.g. champion")
    publish.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI")
    args = parser.parse_args(argv)
    root = args.root or registry_dir()
    if args.command == "register":
        print(register(args.run_dir, args.name, root, model=args.model))
    elif args.command == "list":
        for folder in sorted(p for p in root.glob("*") if p.is_dir()):
            print(f"{folder.name}: {', '.join(f'v{v}' for v in versions(folder.name, root))}")
    elif args.command == "show":
        model = resolve(args.reference, root)
        print(json.dumps(describe(model.parent.parent.name, int(model.parent.name[1:]), root), indent=2))
    else:
        from nlpexp import registry_mlflow

        version = resolve(args.reference, root).parent
        name = args.mlflow_name or version.parent.name
        with contextlib.redirect_stdout(sys.stderr):  # MLflow prints the run's URL: stdout keeps the one answer
            number = registry_mlflow.publish(version, name, args.alias, args.tracking_uri)
        print(f"registry:{registry_mlflow.SCHEME}{name}@v{number}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
