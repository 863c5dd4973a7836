"""The command-line contract, through a real `python run.py` (the only subprocess tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from nlpexp.config import PROJECT_ROOT
from tests import forkserver


def run_py(*args: str, cwd=None, env_extra=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    ledger = f"paths.ledger_file={cwd or '/tmp'}/ledger.jsonl"
    return forkserver.run([sys.executable, str(PROJECT_ROOT / "run.py"), *args, ledger], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


def test_hydra_run_dir_holds_the_whole_run_from_any_directory(tmp_path):
    run_dir = tmp_path / "D"
    done = run_py("task=sbert_nli", "model=tiny_bert", "debug=smoke", "logger=none", f"hydra.run.dir={run_dir}",
                  cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "val/spearman_cosine" in json.loads((run_dir / "metrics.json").read_text())
    assert (run_dir / "best_model" / "modules.json").is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "run.log").is_file()
    # nothing written to the working directory but the ledger this test put there
    assert sorted(p.name for p in tmp_path.iterdir()) == ["D", "ledger.jsonl"]


def test_hub_model_offline_ends_with_one_clear_line(tmp_path):
    done = run_py("model=bert", f"hydra.run.dir={tmp_path / 'D'}")
    assert done.returncode != 0
    errors = [line for line in (done.stdout + done.stderr).splitlines() if "error:" in line]
    assert len(errors) == 1 and "model=minilm" in errors[0]
    assert "Traceback" not in done.stderr
