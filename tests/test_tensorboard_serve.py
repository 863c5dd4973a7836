"""TensorBoard started with the training on request, and a text note at each new best checkpoint."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import time
import urllib.request

from nlpexp.pipeline import run

SMOKE = ["task=sbert_nli", "model=tiny_bert", "debug=smoke"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, expected: str, seconds: float = 60) -> str:
    """The body once it holds `expected` (TensorBoard scans its log dirs a moment after it starts)."""
    deadline, body = time.time() + seconds, ""
    while time.time() < deadline and expected not in body:
        try:
            body = urllib.request.urlopen(url, timeout=2).read().decode()
        except OSError:
            pass
        time.sleep(0.5)
    return body


def test_serve_starts_tensorboard_with_the_training_and_notes_each_new_best(compose_run, tmp_path, caplog):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    port = _free_port()
    caplog.set_level(logging.INFO, logger="nlpexp.logger.tensorboard")
    run(compose_run(*SMOKE, "logger.tensorboard.serve=true", f"logger.tensorboard.port={port}"))
    [pid] = [int(p) for p in re.findall(rf"TensorBoard on http://127.0.0.1:{port} \(pid (\d+);", caplog.text)]
    try:
        assert "tensorboard" in _get(f"http://127.0.0.1:{port}/data/runs", "tensorboard")  # the run's log dir
    finally:
        os.kill(pid, signal.SIGTERM)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    notes = [e.step for e in events.Tensors("best_checkpoint/text_summary")]
    assert notes and notes[0] == 2  # the first evaluation (step 2) is the first best
    text = events.Tensors("best_checkpoint/text_summary")[0].tensor_proto.string_val[0].decode()
    assert text.startswith("new best checkpoint at step 2: eval/spearman_cosine = ")


def test_a_busy_port_is_one_line_and_no_server(tmp_path, caplog):
    from nlpexp.logger.tensorboard import start_server

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        caplog.set_level(logging.INFO, logger="nlpexp.logger.tensorboard")
        assert start_server([tmp_path], busy.getsockname()[1]) is None
    assert "port" in caplog.text and "is in use" in caplog.text
