"""Helpers for bench scripts: run `run.py` like a user would and record its metrics and wall time."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
DOCS = ROOT / "docs"
RUN_PY = ROOT / "run.py"


def bench_parser(doc: str) -> argparse.ArgumentParser:
    """A bench's command line: its docstring as help, and `--quick` (or NLPEXP_BENCH_QUICK=1) for a small slice."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", default=os.environ.get("NLPEXP_BENCH_QUICK") == "1",
                        help="a small slice in a few minutes: checks the script, its figures are not results")
    return parser


# Every bench: `main(argv: list[str] | None = None) -> int` (argv: the flags, for bench_parser), run as
# `raise SystemExit(main())`; benchmarks/run.py runs each in its own process.


def run_script(script: Path, *args: str, env: dict | None = None) -> tuple[str, float]:
    """`python <script> <args>` in a fresh process, offline (HF_HUB_OFFLINE=1; the environment is this one's,
    updated by `env`), as a user would start it; returns (its stdout, wall seconds). A failure raises with the end
    of its stderr."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout, wall


def run_job(*overrides: str, run_dir: Path | None = None, env: dict | None = None) -> dict:
    """`python run.py <overrides>` (see run_script); returns metrics.json plus `wall_s`."""
    run_dir = run_dir or Path(tempfile.mkdtemp(prefix="nlpexp-bench-"))
    steal = StealMeter()
    _, wall = run_script(RUN_PY, *overrides, f"hydra.run.dir={run_dir}", "logger=none", env=env)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {**metrics, "wall_s": round(wall, 1), "steal_pct": steal.percent(), "run_dir": str(run_dir)}


class StealMeter:
    """The share of CPU time the hypervisor took from this VM (/proc/stat `steal`) since it was made: timed
    figures taken while it is high are slower for reasons outside the code measured."""

    def __init__(self) -> None:
        self.start = self._ticks()

    @staticmethod
    def _ticks() -> tuple[int, int] | None:
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        except (OSError, ValueError):
            return None
        return fields[7] if len(fields) > 7 else 0, sum(fields[:8])

    def percent(self) -> float | None:
        end = self._ticks()
        if self.start is None or end is None or end[1] == self.start[1]:
            return None
        return round(100 * (end[0] - self.start[0]) / (end[1] - self.start[1]), 1)


def machine() -> dict:
    """What the figures were measured on: CPU model and cores, GPU if any, the day."""
    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), None)
    gpu = None
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return {"cpu": model, "cpu_count": os.cpu_count(), "gpu": gpu, "date": time.strftime("%Y-%m-%d")}


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def write_results(name: str, figures: dict, table_md: str, results: Path | None = None) -> None:
    """<results>/<name>.json and .md (results: benchmarks/results unless given, e.g. a test's temp dir)."""
    results = results or RESULTS
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    (results / f"{name}.md").write_text(table_md.rstrip() + "\n")


def update_docs(name: str, table_md: str) -> None:
    """Put a bench's table between `<!-- bench:<name> -->` and `<!-- /bench:<name> -->` in the docs page with them."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    pages = [p for p in sorted(DOCS.glob("*.md")) if start in (text := p.read_text()) and end in text]
    if not pages:
        raise RuntimeError(f"no page under docs/ has the markers {start} ... {end} for the {name} table")
    text = pages[0].read_text()
    before, rest = text.split(start, 1)
    after = rest.split(end, 1)[1]
    pages[0].write_text(f"{before}{start}\n{table_md.rstrip()}\n{end}{after}")


def publish(name: str, figures: dict, table_md: str, quick: bool, results: Path | None = None) -> None:
    """Results files always; the docs table only from a full run (a --quick run's figures are not results)."""
    write_results(name, figures, table_md, results)
    if not quick:
        update_docs(name, table_md)
    print(table_md)
