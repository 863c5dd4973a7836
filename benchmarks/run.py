"""`make bench`: run every benchmarks/bench_<name>.py (or the names given), then gather their tables.

Each bench script writes benchmarks/results/<name>.json (figures) and <name>.md (a markdown table);
this runner collects the tables into benchmarks/results/README.md, which the project README links.

    python benchmarks/run.py                          # every bench
    python benchmarks/run.py embedding overhead       # chosen benches
    python benchmarks/run.py --quick                  # each bench's small slice (a plumbing check)
"""

from __future__ import annotations

import subprocess
import sys
import time

from common import HERE, RESULTS, bench_parser

BENCHES = {script.stem.removeprefix("bench_"): script for script in sorted(HERE.glob("bench_*.py"))}


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("benches", nargs="*", help=f"benches to run (default: all): {', '.join(BENCHES)}")
    args = parser.parse_args(argv)
    if unknown := sorted(set(args.benches) - set(BENCHES)):
        parser.error(f"unknown benches {unknown}; benches: {', '.join(BENCHES)}")
    chosen = [script for name, script in BENCHES.items() if not args.benches or name in args.benches]
    failed = []
    for script in chosen:
        started = time.perf_counter()
        print(f"== {script.stem} ==", flush=True)
        # Not common.run_script: a bench prints its progress for an hour or more, and it is shown as it comes.
        if subprocess.call([sys.executable, str(script), *(["--quick"] if args.quick else [])]) != 0:
            failed.append(script.stem)
        print(f"== {script.stem}: {time.perf_counter() - started:.0f} s ==", flush=True)
    tables = [p.read_text() for p in sorted(RESULTS.glob("*.md")) if p.name != "README.md"]
    (RESULTS / "README.md").write_text("# Benchmark results\n\nWritten by `make bench`.\n\n" + "\n\n".join(tables))
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
