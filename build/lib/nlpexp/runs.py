"""`nlpexp runs` / `python -m nlpexp.runs`: list, filter, sort and compare the runs of the ledger.

    nlpexp runs                                   # every run, newest last
    nlpexp runs --task SbertNliTask --status ok --sort val/spearman_cosine
    nlpexp runs --sweep multirun/2026-11-22/10-00-00 --sort val/spearman_cosine --format md
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from nlpexp import ledger
from nlpexp.config import PROJECT_ROOT

DEFAULT_LEDGER = PROJECT_ROOT / "outputs" / "ledger.jsonl"
BASE_COLUMNS = ("run_id", "status", "task", "model", "data", "start")


def select(records: list[dict], task=None, model=None, data=None, status=None, sweep=None) -> list[dict]:
    wanted = {"task": task, "model": model, "data": data, "status": status}
    chosen = [r for r in records if all(v is None or r.get(k) == v for k, v in wanted.items())]
    if sweep:
        root = str(Path(sweep).resolve())
        chosen = [r for r in chosen if str(r.get("run_dir", "")).startswith(root)]
    return chosen


def sort_by(records: list[dict], metric: str, ascending: bool = False) -> list[dict]:
    """Runs that have the metric first, best first; the rest keep their order after them."""
    having = [r for r in records if metric in r.get("metrics", {})]
    missing = [r for r in records if metric not in r.get("metrics", {})]
    return sorted(having, key=lambda r: r["metrics"][metric], reverse=not ascending) + missing


def table_rows(records: list[dict], metrics: list[str]) -> tuple[list[str], list[list[str]]]:
    header = [*BASE_COLUMNS, *metrics, "run_dir"]
    rows = []
    for r in records:
        values = [str(r.get(c, "")) for c in BASE_COLUMNS]
        values += [f"{r['metrics'][m]:.4f}" if m in r.get("metrics", {}) else "" for m in metrics]
        rows.append([*values, str(r.get("run_dir", ""))])
    return header, rows


def render(header: list[str], rows: list[list[str]], fmt: str) -> str:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nlpexp runs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ledger", type=Path, default=DEFAULT_LEDGER)
    for key in ("task", "model", "data", "status"):
        parser.add_argument(f"--{key}")
    parser.add_argument("--sweep", help="only the trials whose run dir lies under this sweep dir")
    parser.add_argument("--sort", metavar="METRIC", help="sort by this metric, best (largest) first")
    parser.add_argument("--ascending", action="store_true", help="with --sort: smallest first")
    parser.add_argument("--metrics", default="", help="comma-separated metric columns (default: --sort's)")
    parser.add_argument("--format", choices=("table", "md", "csv"), default="table")
    parser.add_argument("--output", type=Path, help="write to this file instead of stdout")
    args = parser.parse_args(argv)

    records = select(ledger.read(args.ledger), args.task, args.model, args.data, args.status, args.sweep)
    if args.sort:
        records = sort_by(records, args.sort, args.ascending)
    metrics = [m for m in args.metrics.split(",") if m] or ([args.sort] if args.sort else [])
    text = render(*table_rows(records, metrics), args.format)
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
