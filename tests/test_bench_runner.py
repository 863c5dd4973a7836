"""`make bench` (benchmarks/run.py): a mistyped bench name stops it before anything runs or is rewritten."""

from __future__ import annotations

import subprocess
import sys

from nlpexp.config import PROJECT_ROOT


def test_an_unknown_bench_is_an_error_not_an_empty_run():
    readme = PROJECT_ROOT / "benchmarks" / "results" / "README.md"
    before = readme.stat().st_mtime_ns
    done = subprocess.run([sys.executable, str(PROJECT_ROOT / "benchmarks" / "run.py"), "embeding", "--quick"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown benches ['embeding']; benches: classification, embedding" in done.stderr
    assert "==" not in done.stdout and readme.stat().st_mtime_ns == before
