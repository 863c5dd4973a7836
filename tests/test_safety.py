"""Secrets never reach run dirs, NaN losses stop runs, writes are atomic."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time

import pytest

from nlpexp import NlpexpError
from nlpexp.pipeline import run

SMOKE = ("task=sbert_nli", "model=tiny_bert", "debug=smoke")
FAKE_KEY = "fake-planted-wandb-key-0123456789abcdef"


def test_planted_secrets_never_reach_the_run_dir(compose_run, monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.setenv("HF_TOKEN", "hf_" + FAKE_KEY)
    cfg = compose_run(*SMOKE, "logger=[tensorboard,wandb]", "logger.wandb.mode=offline",
                      "+trainer_note=${oc.env:WANDB_API_KEY}")
    run(cfg)
    leaked = [str(p) for p in tmp_path.rglob("*") if p.is_file() and FAKE_KEY.encode() in p.read_bytes()]
    assert leaked == []
    assert "<redacted>" in (tmp_path / "run" / "config.yaml").read_text()


def test_nan_loss_stops_the_run_with_one_line(compose_run, tmp_path):
    with pytest.raises(NlpexpError, match=r"training loss became (nan|inf) at step \d+; lower optimizer.lr"):
        run(compose_run(*SMOKE, "optimizer.lr=1e30", "trainer.max_steps=30"))
    assert not (tmp_path / "run" / "metrics.json").exists()
    record = json.loads((tmp_path / "ledger.jsonl").read_text())
    assert record["status"] == "failed" and "training loss became" in record["error"]


def test_guard_sees_infinite_losses():
    from transformers import TrainerControl, TrainerState

    from nlpexp.trainer.build import NonFiniteLossGuard

    with pytest.raises(NlpexpError):
        NonFiniteLossGuard().on_log(None, TrainerState(), TrainerControl(), logs={"loss": math.inf})


_WRITER = """
import sys
from pathlib import Path
from nlpexp.io import write_json_atomic
print("ready", flush=True)
write_json_atomic(Path(sys.argv[1]), {"rows": ["x" * 100] * 3_000_000})
"""


def test_killed_writer_leaves_the_old_file_whole(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text(json.dumps({"old": True}))
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads(target.read_text()) in ({"old": True}, {"rows": ["x" * 100] * 3_000_000})


def test_configs_cannot_name_code_outside_the_allow_list(compose_run, tmp_path):
    for target in ("os.system", "subprocess.run", "builtins.eval", "nlpexpx.evil"):
        with pytest.raises(NlpexpError, match="is not allowed"):
            run(compose_run(*SMOKE, f"optimizer._target_={target}"))
    assert not (tmp_path / "run").exists()


def test_a_job_re_checks_its_code_only_where_no_gate_checked_the_command():
    """run.py's launcher applies the allow-list once, in its gate (nlpexp.gate): its jobs do not apply it again;
    a job started without it (from Python, in a launcher's worker process) does."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from nlpexp.config import CONFIG_DIR, check_run, gate_passed

    with initialize_config_dir(config_dir=str(CONFIG_DIR)):
        cfg = compose("config", return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    job = cfg.copy()
    with open_dict(job):
        del job["hydra"]
        job.model._target_ = "os.system"  # what no gate would have let through
    try:
        with gate_passed():
            check_run(job)
        with pytest.raises(NlpexpError, match="model._target_='os.system' is not allowed"):
            check_run(job)
    finally:
        HydraConfig.instance().cfg = None
