"""`make bench`: run every benchmarks/bench_<name>.py (or the names given), then gather their tables.

Each bench script writes benchmarks/results/<name>.json (figures) and <name>.md (a markdown table);
this runner collects the tables into benchmarks/results/README.md, which the project README links.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def main(argv: list[str] | None = None) -> int:
    names = sys.argv[1:] if argv is None else argv
    scripts = sorted(HERE.glob("bench_*.py"))
    chosen = [s for s in scripts if not names or s.stem.removeprefix("bench_") in names]
    failed = []
    for script in chosen:
        started = time.perf_counter()
        print(f"== {script.stem} ==", flush=True)
        if subprocess.call([sys.executable, str(script)]) != 0:
            failed.append(script.stem)
        print(f"== {script.stem}: {time.perf_counter() - started:.0f} s ==", flush=True)
    tables = [p.read_text() for p in sorted(RESULTS.glob("*.md")) if p.name != "README.md"]
    (RESULTS / "README.md").write_text("# Benchmark results\n\nWritten by `make bench`.\n\n" + "\n\n".join(tables))
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
