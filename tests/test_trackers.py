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


def test_offline_env_wins_over_a_key_and_the_run_finishes_without_network(compose_run, tmp_path, nowhere,
                                                                           monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setattr(wandb_logger, "server_problem", lambda: pytest.fail("offline must not probe the server"))
    started = time.monotonic()
    metrics = run(compose_run("task=sbert_nli", "model=tiny_bert", "debug=smoke", "logger=wandb"))
    assert time.monotonic() - started < 90 and "val/spearman_cosine" in metrics
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))


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
