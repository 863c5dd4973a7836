"""benchmarks/bench_sweep16.py (issue 30, item 2): its --tiny run writes both files, and the plain arm ran the
very parameter sets the sweep sampled (read back from each plain run's own config, not echoed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from nlpexp.config import PROJECT_ROOT

BENCH = PROJECT_ROOT / "benchmarks" / "bench_sweep16.py"
PARAMS = {"optimizer.lr", "optimizer.weight_decay", "trainer.batch_size", "scheduler.warmup_ratio"}


@pytest.mark.slow  # a 2-trial sweep + 2 fresh run.py processes: 78 s (41 s CPU) on the shared 2-core machine
def test_tiny_run_times_both_arms_on_the_same_trials(tmp_path):
    docs = PROJECT_ROOT / "docs" / "performance.md"
    before = docs.stat().st_mtime_ns
    done = subprocess.run([sys.executable, str(BENCH), "--tiny", "--trials", "2", "--results-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep16.json", "sweep16.md"]
    figures = json.loads((tmp_path / "sweep16.json").read_text())
    sweep, plain = figures["sweep"], figures["plain"]
    assert figures["tiny"] and figures["n_trials"] == 2 and figures["machine"]["cpu_count"]
    # each arm on the whole machine: the sweep one worker per core, each plain run torch's own thread count
    assert sweep["jobs"] == os.cpu_count() and sweep["threads"] is None and plain["threads"] is None
    assert [t["number"] for t in sweep["trials"]] == [r["number"] for r in plain["runs"]] == [0, 1]
    for trial, run in zip(sweep["trials"], plain["runs"], strict=True):
        assert set(trial["params"]) == PARAMS
        assert {k: float(v) for k, v in run["params"].items()} == {k: float(v) for k, v in trial["params"].items()}
    assert sweep["trials"][0]["params"] != sweep["trials"][1]["params"]
    assert plain["best_value"] == max(r["value"] for r in plain["runs"])
    assert plain["wall_s"] == pytest.approx(sum(r["wall_s"] for r in plain["runs"]), abs=0.2)
    assert figures["wall_ratio"] == pytest.approx(sweep["wall_s"] / plain["wall_s"], abs=1e-3)
    table = (tmp_path / "sweep16.md").read_text()
    assert "nlpexp sweep" in table and "2 plain `run.py` processes" in table and str(figures["machine"]["cpu"]) in table
    assert docs.stat().st_mtime_ns == before  # a tiny run's figures are not results: the docs table stays


def test_a_plain_run_composes_the_sweeps_job_with_the_trials_parameters():
    """The plain arm cannot name the sweep preset (run.py refuses it without -m): it must carry the preset's own
    settings, or its trials would train another job than the sweep's."""
    sys.path.insert(0, str(BENCH.parent))
    try:
        from bench_sweep16 import plain_overrides
    finally:
        sys.path.remove(str(BENCH.parent))
    params = {"optimizer.lr": "3e-05", "optimizer.weight_decay": "0.01", "trainer.batch_size": "32",
              "scheduler.warmup_ratio": "0.1"}
    done = subprocess.run([sys.executable, str(PROJECT_ROOT / "run.py"), *plain_overrides(params, False), "--cfg",
                           "job"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    job = yaml.safe_load(done.stdout)
    assert job["task"]["trained_layers"] is None and job["task"]["head_lr"] == 2e-3  # the preset's, not config's
    assert job["trainer"]["eval_every_steps"] == 20 and job["trainer"]["max_steps"] == 60
    assert job["optimizer"]["lr"] == 3e-5 and job["trainer"]["batch_size"] == 32
    assert job["trainer"]["group_by_length"] is False and job["paths"]["cache_dir"] is None
    assert job["trainer"]["save_only_model"] is False  # the sweep's economy, as grouping: not the plain arm's
