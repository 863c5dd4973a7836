"""benchmarks/bench_grouping.py (issue 30, item 1): each task run grouped and not, from the same recipe, with the
arms' order alternating, and the quality rule (grouped within 0.003 of plain, or better) applied to its figures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nlpexp.config import PROJECT_ROOT

BENCH = PROJECT_ROOT / "benchmarks" / "bench_grouping.py"


@pytest.mark.slow  # 4 tiny smoke runs in fresh processes
def test_quick_run_measures_both_arms_of_each_task(tmp_path):
    docs = PROJECT_ROOT / "docs" / "performance.md"
    before = docs.stat().st_mtime_ns
    done = subprocess.run([sys.executable, str(BENCH), "--quick", "sbert_nli", "classification", "--results-dir",
                           str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads((tmp_path / "grouping.json").read_text())
    assert [row["task"] for row in figures["rows"]] == ["sbert_nli", "classification"]
    assert [row["first"] for row in figures["rows"]] == ["plain", "grouped"]
    for row in figures["rows"]:
        plain, grouped, metric = row["plain"], row["grouped"], row["metric"]
        assert row["quality_gap"] == pytest.approx(grouped[metric] - plain[metric], abs=1e-4)
        assert row["quality_holds"] == (row["quality_gap"] >= -0.003)
        assert plain["peak_rss_mb"] > 100 and grouped["peak_rss_mb"] > 100  # the run's own memory, not the bench's
    assert "| sbert_nli |" in (tmp_path / "grouping.md").read_text()
    assert docs.stat().st_mtime_ns == before  # a quick run's figures are not results: the docs table stays

