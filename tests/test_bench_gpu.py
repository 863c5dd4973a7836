"""benchmarks/gpu.py (issue 30, item 5): prepared on the CPU for a session with a GPU; its plumbing checked here
with a tiny model, so that the GPU minutes go to measuring."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nlpexp.config import PROJECT_ROOT

GPU_BENCH = PROJECT_ROOT / "benchmarks" / "gpu.py"


def run_bench(*args: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(GPU_BENCH), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})


def test_without_a_gpu_it_refuses_in_one_line_and_writes_nothing(tmp_path):
    done = run_bench("--out", str(tmp_path), timeout=120)
    assert done.returncode == 2 and done.stderr.strip().startswith("error: no CUDA GPU")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_tiny_run_measures_every_row_of_both_workloads(tmp_path):
    done = run_bench("--tiny", "--out", str(tmp_path), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads((tmp_path / "gpu.json").read_text())
    runs = {(row["workload"], row["run"]): row for row in figures["rows"]}
    assert set(runs) == {("mnrl", "nlpexp fp32"), ("mnrl", "nlpexp fp32 grouped"),
                         ("mnrl", "plain sentence-transformers fp32"),
                         ("imdb", "nlpexp fp32"), ("imdb", "nlpexp fp32 grouped"),
                         ("imdb", "plain transformers fp32"), ("imdb", "plain transformers fp32 grouped")}
    for row in runs.values():
        assert row["samples_per_s"] > 0
        assert (0 <= row["metric"] <= 1) if row["workload"] == "imdb" else (-1 <= row["metric"] <= 1)
    grouped = runs[("mnrl", "nlpexp fp32 grouped")]["command"]
    assert "trainer.group_by_length=true" in grouped and "model=tiny_bert" in grouped
    assert "TINY PLUMBING CHECK" in (tmp_path / "gpu.md").read_text()
