"""Trackers never hang: explicit offline settings win over an API key, an unreachable server is found in seconds."""

from __future__ import annotations

import socket
import time

import pytest

from nlpexp import NlpexpError
from nlpexp.logger import wandb as wandb_logger
from nlpexp.logger.wandb import WandbLogger
from nlpexp.pipeline import run


@pytest.fixture
def nowhere(monkeypatch):
    """A W&B server address where nothing listens (a port just freed), and a fake key."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("WANDB_API_KEY", "fake-key-0123456789abcdef0123456789abcdef")
    return port


def test_offline_env_wins_over_a_key_and_the_run_finishes_without_network_with_its_name_and_clean_keys(
        compose_run, tmp_path, nowhere, monkeypatch):
    """A real offline W&B run; a spy on its Run records what nlpexp logged (offline runs keep no readable summary).
    (One run for what tests/test_wandb.py checks of a run too: a smoke run costs seconds of CPU.)"""
    from wandb.sdk.wandb_run import Run

    logged, seen = [], {}
    real_log, real_finish = Run.log, Run.finish

    def log(self, data, *args, **kwargs):
        logged.append(dict(data))
        return real_log(self, data, *args, **kwargs)

    def finish(self, *args, **kwargs):
        seen.update(name=self.name, project=self.project, summary=set(self.summary.keys()))
        return real_finish(self, *args, **kwargs)

    monkeypatch.setattr(Run, "log", log)
    monkeypatch.setattr(Run, "finish", finish)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_PROJECT", "newcomer")
    monkeypatch.setattr(wandb_logger, "server_problem", lambda: pytest.fail("offline must not probe the server"))
    started = time.monotonic()
    metrics = run(compose_run("task=sbert_nli", "model=tiny_bert", "debug=smoke", "logger=wandb",
                              "logger.wandb.name=my-run"))
    assert time.monotonic() - started < 90 and "val/spearman_cosine" in metrics
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    keys = {k for entry in logged for k in entry}
    assert {"train/loss", "train/learning_rate", "eval/spearman_cosine"} <= keys
    assert not [k for k in keys | seen["summary"] if k.startswith("train/train_")]  # one key per figure
    assert (seen["name"], seen["project"]) == ("my-run", "newcomer")  # the name key, the project from WANDB_PROJECT


@pytest.mark.parametrize("env, mode, expected", [
    ("offline", "online", "offline"), ("disabled", "auto", "disabled"), ("", "offline", "offline"),
    ("dryrun", "auto", "offline"),
])
def test_explicit_offline_settings_win(tmp_path, nowhere, monkeypatch, env, mode, expected):
    monkeypatch.setenv("WANDB_MODE", env)
    assert WandbLogger(project="p", dir=str(tmp_path), mode=mode).resolved_mode() == expected


def test_auto_with_an_unreachable_server_falls_back_to_offline(tmp_path, nowhere, monkeypatch, caplog):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    started = time.monotonic()
    assert WandbLogger(project="p", dir=str(tmp_path)).resolved_mode() == "offline"
    assert time.monotonic() - started < 10
    assert f"127.0.0.1:{nowhere}" in caplog.text and "logging offline" in caplog.text


def test_online_with_an_unreachable_server_is_one_line(tmp_path, nowhere, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    with pytest.raises(NlpexpError, match=r"^logger.wandb: the W&B server is unreachable \(127.0.0.1:\d+: "):
        WandbLogger(project="p", dir=str(tmp_path), mode="online").resolved_mode()
