"""Exact resume: a SIGKILLed training resumed with trainer.resume=true ends like an uninterrupted one."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from nlpexp.config import PROJECT_ROOT
from nlpexp.tb import read_tags

STEPS = 60
ARGS = ["task=sbert_nli", "model=tiny_bert", "debug=smoke", f"trainer.max_steps={STEPS}",
        "trainer.eval_every_steps=10", "trainer.save_total_limit=null"]


def _command(run_dir, *extra):
    return [sys.executable, str(PROJECT_ROOT / "run.py"), *ARGS, *extra, f"hydra.run.dir={run_dir}",
            f"paths.ledger_file={run_dir.parent / 'ledger.jsonl'}"]


def _env(data_root):
    return {**os.environ, "NLPEXP_DATA_DIR": str(data_root), "HF_HUB_OFFLINE": "1"}


def _kill_after(run_dir, data_root, step: int) -> None:
    """Start a run, SIGKILL it once the progress bar passed `step` and checkpoint-`step` exists."""
    proc = subprocess.Popen(_command(run_dir), env=_env(data_root), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    seen = b""
    while proc.poll() is None:
        seen = (seen + os.read(proc.stderr.fileno(), 4096))[-2000:]
        progress = [int(n) for n in re.findall(rb"(\d+)/%d \[" % STEPS, seen)]
        if progress and max(progress) > step and (run_dir / "checkpoints" / f"checkpoint-{step}").is_dir():
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (run_dir / "metrics.json").exists()


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_same_metrics(tmp_path, data_root):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    subprocess.run(_command(straight), env=_env(data_root), check=True, capture_output=True)
    _kill_after(resumed, data_root, step=20)
    done = subprocess.run(_command(resumed, "trainer.resume=true"), env=_env(data_root), capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-2000:]

    expected = json.loads((straight / "metrics.json").read_text())
    got = json.loads((resumed / "metrics.json").read_text())
    for key, value in expected.items():
        if not key.startswith("time/"):
            assert got[key] == pytest.approx(value, abs=1e-6), key

    batch_steps = [step for step, _ in read_tags(resumed / "tensorboard")["Loss/Train_Batch"]]
    assert batch_steps == list(range(1, STEPS + 1))  # one continuous log, no step twice


def test_resume_without_checkpoint_is_one_clear_error(compose_run):
    from nlpexp.errors import NlpexpError
    from nlpexp.pipeline import run

    with pytest.raises(NlpexpError, match="holds no checkpoint"):
        run(compose_run("task=sbert_nli", "model=tiny_bert", "debug=smoke", "trainer.resume=true"))
