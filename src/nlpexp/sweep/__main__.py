"""`python -m nlpexp.sweep summary|dashboard [<sweep dir | storage URL>]`: a study's summary from its storage
alone, or optuna-dashboard on it (`make dashboard`). Without a target: the newest study under paths.sweeps_dir
(multirun/)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from nlpexp import NlpexpError
from nlpexp.cli import ArgumentParser, port, run_cli
from nlpexp.config import default_paths

log = logging.getLogger("nlpexp")


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m nlpexp.sweep", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    summary = commands.add_parser("summary", help="write trials.csv/.md, best.json/.yaml and plots/ again")
    dashboard = commands.add_parser("dashboard", help="serve optuna-dashboard on a study's storage")
    for command in (summary, dashboard):
        command.add_argument("target", nargs="?", help="a sweep dir (holding study.json) or a storage URL")
    summary.add_argument("--study", help="the study, when the storage holds several")
    summary.add_argument("--out", type=Path, help="where to write (default: the sweep dir)")
    dashboard.add_argument("--host", default="127.0.0.1", help="127.0.0.1 (default) serves this machine only")
    dashboard.add_argument("--port", type=port, default=8080)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        target = args.target or str(newest_sweep_dir(Path(default_paths()["sweeps_dir"])))
        if args.command == "summary":
            write(target, args.study, args.out)
        else:
            serve(target, args.host, args.port)
    except NlpexpError as err:
        log.error("error: %s", err)
        return 2
    return 0


def newest_sweep_dir(root: Path) -> Path:
    from nlpexp.sweep.study import STUDY_FILE

    found = sorted(root.glob(f"*/{STUDY_FILE}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise NlpexpError(f"no study under {root}: give a sweep dir or a storage URL")
    return found[-1].parent


def write(target: str, study_name: str | None, out: Path | None) -> None:
    from nlpexp.sweep.study import load_study
    from nlpexp.sweep.summary import write_summary

    study, sweep_dir = load_study(target, study_name)
    if out is None and sweep_dir is None:
        raise NlpexpError("a storage URL names no sweep dir: say where the summary goes with --out DIR")
    log.info(write_summary(study, out or sweep_dir, runs_within=sweep_dir))  # a sweep dir is data: its runs only


def serve(target: str, host: str, port: int) -> None:
    import optuna_dashboard

    from nlpexp.sweep.storage import open_storage
    from nlpexp.sweep.study import locate

    url = locate(target)[0]
    storage = open_storage(url, read_only=True)
    log.info("optuna-dashboard on %s: http://%s:%d/ (Ctrl-C stops it)", url, host, port)
    optuna_dashboard.run_server(storage, host=host, port=port)


if __name__ == "__main__":
    sys.exit(run_cli(main))
