"""`nlpexp runs` / `python -m nlpexp.runs`: list, filter, sort and compare the runs of the ledger.

    nlpexp runs                                   # every run, newest last
    nlpexp runs --task sbert_nli --status ok --sort val/spearman_cosine
    nlpexp runs --status failed                   # with the error each one ended with
    nlpexp runs --sweep multirun/<study> --sort val/spearman_cosine --format md

The ledger is paths.ledger_file of the composed config ($NLPEXP_LEDGER_DIR/ledger.jsonl, else outputs/ledger.jsonl);
--ledger FILE reads another.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from nlpexp import NlpexpError
from nlpexp.cli import ArgumentParser, command, existing_file, new_file
from nlpexp.config import CONFIG_DIR, default_paths
from nlpexp.io import read_ledger

STATUSES = ("ok", "failed", "interrupted", "pruned", "running")
BASE_COLUMNS = ("run_id", "status", "mode", "task", "model", "data", "start")
END_COLUMNS = ("error", "run_dir")


def select(records: list[dict], task=None, model=None, data=None, status=None, sweep=None) -> list[dict]:
    """The records matching every given field; `task` is a task option (sbert_nli) or its class (SbertNliTask);
    `sweep` a sweep dir, matched exactly against the records' sweep_dir."""
    sweep_dir = str(Path(sweep).resolve()) if sweep else None
    wanted = {"model": model, "data": data, "status": status, "sweep_dir": sweep_dir}
    chosen = [r for r in records if all(v is None or r.get(k) == v for k, v in wanted.items())]
    if task:
        names = {task, task_class_name(task)}
        chosen = [r for r in chosen if r.get("task") in names]
    return chosen


def task_class_name(option: str) -> str | None:
    """`classification` -> `ClassificationTask`: the class conf/task/<option>.yaml builds (None if no such option)."""
    import yaml

    path = CONFIG_DIR / "task" / f"{option}.yaml"
    if "/" in option or not path.is_file():
        return None
    target = (yaml.safe_load(path.read_text()) or {}).get("_target_", "")
    return target.rsplit(".", 1)[-1] or None


def _number(record: dict, metric: str) -> float | None:
    """The record's value of `metric` if it is a number (a ledger line is data: another value is no value)."""
    value = record.get("metrics").get(metric) if isinstance(record.get("metrics"), dict) else None
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def sort_by(records: list[dict], metric: str, ascending: bool = False) -> list[dict]:
    """Runs that have the metric first, best first; the rest keep their order after them."""
    having = [r for r in records if _number(r, metric) is not None]
    missing = [r for r in records if _number(r, metric) is None]
    return sorted(having, key=lambda r: _number(r, metric), reverse=not ascending) + missing


def render(records: list[dict], metrics: list[str], fmt: str) -> str:
    """A table of the records (a column per metric): aligned text, markdown or csv."""
    header = [*BASE_COLUMNS, *metrics, *END_COLUMNS]
    rows = [[*(str(r.get(c) or "") for c in BASE_COLUMNS),
             *(f"{_number(r, m):.4f}" if _number(r, m) is not None else "" for m in metrics),
             *(str(r.get(c) or "") for c in END_COLUMNS)] for r in records]
    if fmt == "csv":
        out = io.StringIO()
        csv.writer(out).writerows([header, *rows])
        return out.getvalue()
    if fmt == "md":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=False)]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=False))
                     for line in [header, *rows]) + "\n"


@command
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="nlpexp runs", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ledger", type=existing_file, help="the ledger file (default: paths.ledger_file)")
    parser.add_argument("--task", help="a task option (classification) or its class (ClassificationTask)")
    for key in ("model", "data"):
        parser.add_argument(f"--{key}", help=f"the {key} option (its name)")
    parser.add_argument("--status", choices=STATUSES)
    parser.add_argument("--sweep", metavar="DIR", help="only the trials of this sweep (multirun/<study>)")
    parser.add_argument("--sort", metavar="METRIC", help="sort by this metric, best (largest) first")
    parser.add_argument("--ascending", action="store_true", help="with --sort: smallest first")
    parser.add_argument("--metrics", default="", help="comma-separated metric columns (default: --sort's)")
    parser.add_argument("--format", choices=("table", "md", "csv"), default="table")
    parser.add_argument("--output", type=new_file, help="write to this file instead of stdout")
    args = parser.parse_args(argv)

    records = select(read_ledger(args.ledger or Path(default_paths()["ledger_file"])), args.task, args.model,
                     args.data, args.status, args.sweep)
    if args.sweep and not records and not Path(args.sweep).is_dir():  # a deleted sweep's trials are still listed
        raise NlpexpError(f"--sweep: {args.sweep} is no sweep dir, and no run in the ledger was a trial of it")
    metrics = [m for m in args.metrics.split(",") if m] or ([args.sort] if args.sort else [])
    known = sorted({m for r in records for m in r.get("metrics") or {}})
    if records and (unknown := [m for m in metrics if m not in known]):
        raise NlpexpError(f"no run here has the metric {unknown[0]!r}; metrics: {', '.join(known) or 'none'}")
    if args.sort:
        records = sort_by(records, args.sort, args.ascending)
    text = render(records, metrics, args.format)
    if args.output:
        args.output.write_text(text)  # an OSError: one `error: cannot use <file>` line (nlpexp.cli.run_cli)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
