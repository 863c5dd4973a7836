"""Helpers for bench scripts: run `run.py` like a user would and record its metrics and wall time."""

from __future__ import annotations

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


def run_job(*overrides: str, run_dir: Path | None = None) -> dict:
    """`python run.py <overrides>` in a fresh process; returns metrics.json plus `wall_s`."""
    run_dir = run_dir or Path(tempfile.mkdtemp(prefix="nlpexp-bench-"))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "run.py"), *overrides, f"hydra.run.dir={run_dir}",
                           "logger=none"], env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True,
                          text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"run.py {' '.join(overrides)} failed:\n{done.stderr[-3000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {**metrics, "wall_s": round(wall, 1), "run_dir": str(run_dir)}


def write_results(name: str, figures: dict, table_md: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(table_md.rstrip() + "\n")
