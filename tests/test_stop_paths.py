"""One stop path: a signal, a metric that is not a number and a bad command-line argument each end as one line.

- SIGTERM / SIGINT sent to a real `python run.py` mid-training: exit 143 / 130, one console line after the signal,
  no traceback, a ledger line `interrupted`, a sealed checkpoint that `trainer.resume=true` continues from.
- Constant STS gold scores: one `error:` line naming the metric and the data, status `failed`, strict JSON.
- Every command's bad argument, missing or odd path, out-of-range port: exit 2, one `error:` line, nothing created.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nlpexp.config import PROJECT_ROOT
from nlpexp.trainer.checkpoints import SEAL, newest_complete
from tests import forkserver
from tests.fixtures import _write, make_data_root, sts_rows

SMOKE = ["task=sbert_nli", "model=tiny_bert", "debug=smoke", "logger=none"]


def strict_json(text: str):
    """json.loads that refuses NaN, Infinity and -Infinity, as every other JSON parser does."""
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def _ledger(path: Path) -> list[dict]:
    return [strict_json(line) for line in path.read_text().splitlines() if line.strip()]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    # unbuffered, so that what the child printed before the signal is in the file when it is sent (no TQDM_DISABLE:
    # nlpexp's bar passes its own `disable`, which wins over tqdm's environment, and the console is a person's)
    return {**os.environ, "NLPEXP_LEDGER_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1", **extra}


def _wait_for_a_sealed_checkpoint(run_dir: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    """Training is under way once a checkpoint is sealed (debug=smoke saves every 2 steps): data-independent."""
    deadline = time.monotonic() + timeout
    while not list((run_dir / "checkpoints").glob(f"checkpoint-*/{SEAL}")):
        assert process.poll() is None, f"the run ended (exit {process.returncode}) before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint sealed in time"
        time.sleep(0.05)


# a progress line that training printed before the signal took effect (logged at every evaluation)
# (or a redraw of the training bar: tqdm rewrites its one row with \r until the bar is cleared)
_PROGRESS = re.compile(r"^(\[[^]]*\]\[nlpexp\.progress\]\[INFO\] - )?step \d+/\d+ |^train: +\d+%\|")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_training_ends_like_a_failure_and_resumes(signum, tmp_path):
    run_dir, console = tmp_path / "run", tmp_path / "console.txt"
    args = [*SMOKE, "trainer.max_steps=2000", f"hydra.run.dir={run_dir}"]
    with open(console, "wb") as out:
        # reset_sigint: the child takes SIGINT as a person's terminal delivers it: a suite started in the background
        # (`make test &`) passes SIGINT on ignored, and nlpexp rightly keeps a signal ignored that its process was
        # started ignoring
        process = forkserver.popen([sys.executable, str(PROJECT_ROOT / "run.py"), *args], stdout=out,
                                   stderr=subprocess.STDOUT, env=_env(tmp_path), reset_sigint=True)
        try:
            _wait_for_a_sealed_checkpoint(run_dir, process)
            before = console.stat().st_size
            process.send_signal(signum)
            code = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
    text = console.read_text(errors="replace")
    after = [line.strip() for line in re.split(r"[\r\n]+", text[before:]) if line.strip()]
    after = [line for line in after if not _PROGRESS.match(line)]
    name = signal.Signals(signum).name

    assert code == 128 + signum
    assert "Traceback" not in text
    assert len(after) == 1 and f"error: interrupted by {name}" in after[0], after
    [record] = _ledger(tmp_path / "ledger.jsonl")
    assert record["status"] == "interrupted" and record["error"] == f"interrupted by {name}"
    assert record["run_dir"] == str(run_dir)
    checkpoint = newest_complete(run_dir / "checkpoints")
    assert checkpoint is not None and not (run_dir / "metrics.json").exists()

    # the resume continues from that checkpoint and finishes (two steps more, so that the test stays short)
    step = int(checkpoint.name.rpartition("-")[2])
    done = forkserver.run([sys.executable, str(PROJECT_ROOT / "run.py"), *args, "trainer.resume=true",
                           f"trainer.max_steps={step + 2}"], capture_output=True, text=True, env=_env(tmp_path),
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resuming from {checkpoint}" in (run_dir / "run.log").read_text()
    assert [r["status"] for r in _ledger(tmp_path / "ledger.jsonl")] == ["interrupted", "ok"]
    assert "val/loss" in strict_json((run_dir / "metrics.json").read_text())


def test_a_nan_metric_fails_the_run_in_one_line_and_every_json_is_strict(tmp_path):
    data = make_data_root(tmp_path / "data")
    rows = sts_rows(random.Random(1), 24)
    for row in rows:
        row["score"] = 2.5  # constant gold scores: every correlation is undefined
    _write(data / "stsb" / "validation.jsonl.gz", rows)
    run_dir = tmp_path / "run"
    done = forkserver.run([sys.executable, str(PROJECT_ROOT / "run.py"), *SMOKE, f"hydra.run.dir={run_dir}"],
                          capture_output=True, text=True, env=_env(tmp_path, NLPEXP_DATA_DIR=str(data)), timeout=300)
    errors = [line for line in (done.stdout + done.stderr).splitlines() if "error:" in line]

    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(errors) == 1, errors
    assert re.search(r"error: metric val/(pearson|spearman)_\w+ is nan .*stsb/validation", errors[0]), errors[0]
    [record] = _ledger(tmp_path / "ledger.jsonl")
    assert record["status"] == "failed" and record["error"] in errors[0]
    assert record["metrics"]["val/spearman_cosine"] is None  # NaN written as null
    assert not (run_dir / "metrics.json").exists()
    written = [p for p in run_dir.rglob("*.json") if p.name != "trainer_state.json"]  # that one is HF's own format
    assert any(p.name == SEAL for p in written)  # the checkpoints' seals, provenance.json, ...
    for path in written:
        strict_json(path.read_text())


def test_the_json_writers_refuse_nan_naming_the_key(tmp_path):
    from nlpexp import NlpexpError
    from nlpexp.io import append_to_ledger, write_json_atomic

    with pytest.raises(NlpexpError, match=r"metrics.json: val/x is not a finite number"):
        write_json_atomic(tmp_path / "metrics.json", {"val/ok": 1.0, "val/x": float("inf")})
    assert not (tmp_path / "metrics.json").exists()
    append_to_ledger(tmp_path / "ledger.jsonl", {"metrics": {"a": float("nan"), "b": [float("-inf"), 1.5]}})
    assert _ledger(tmp_path / "ledger.jsonl") == [{"metrics": {"a": None, "b": [None, 1.5]}}]


def _cli_cases(tmp: Path) -> list[tuple[list[str], str]]:
    """(command, a fragment of its one error line); every path named is one that must not be created."""
    not_journal = tmp / "not_a_journal.log"
    nlpexp = [sys.executable, "-m", "nlpexp.cli"]
    sweep = [sys.executable, "-m", "nlpexp.sweep"]
    return [
        ([*nlpexp, "runs", "--output", str(tmp)], "--output: " + str(tmp) + " is a folder"),
        ([*nlpexp, "runs", "--output", "/proc/x.csv"], "/proc/x.csv"),
        ([*nlpexp, "runs", "--output", str(tmp / "new" / "x.csv")], "--output"),
        ([*nlpexp, "runs", "--ledger", str(tmp)], "--ledger: " + str(tmp) + " is a folder"),
        ([*nlpexp, "runs", "--ledger", str(tmp / "missing.jsonl")], "missing.jsonl is missing"),
        ([*nlpexp, "runs", "--status", "bogus"], "--status: invalid choice: 'bogus'"),
        ([*nlpexp, "runs", "--sweep", str(tmp / "nonexistent")], "--sweep:"),
        ([*nlpexp, "runs", "--bogus"], "unrecognized arguments: --bogus"),
        ([*nlpexp, "tb", "list", str(tmp / "missing")], "missing is missing"),
        ([*nlpexp, "tb", "serve", "--port", "99999"], "'99999' is not a port"),
        ([*nlpexp, "tb", "serve", str(tmp / "missing")], "missing is missing"),
        ([*nlpexp, "registry", "show"], "required: reference"),
        ([*nlpexp, "bogus"], "unknown command 'bogus'"),
        ([*nlpexp], "no command given"),
        ([*sweep, "dashboard", "--port", "99999"], "'99999' is not a port"),
        ([*sweep, "dashboard", "--port", "0"], "'0' is not a port"),
        ([*sweep, "summary", f"journal://{not_journal}", "--out", str(tmp / "out")], "is not an Optuna journal"),
        ([*sweep, "summary", f"journal://{tmp / 'new' / 'dir' / 'x.log'}", "--out", str(tmp / "out")],
         "no study storage at"),
        ([*sweep, "summary", f"sqlite:///{tmp / 'new.db'}", "--out", str(tmp / "out")], "no study storage at"),
        ([*sweep, "bogus"], "invalid choice: 'bogus'"),
    ]


def test_every_command_s_bad_argument_is_one_error_line_exit_2_and_creates_nothing(tmp_path):
    (tmp_path / "not_a_journal.log").write_text('{"a": 1}\n')
    before = sorted(tmp_path.rglob("*"))
    failures = []
    for command, fragment in _cli_cases(tmp_path):
        done = forkserver.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                              env={**os.environ, "NLPEXP_SWEEPS_DIR": str(tmp_path / "sweeps")})
        lines = (done.stdout + done.stderr).strip().splitlines()
        if done.returncode != 2 or len(lines) != 1 or not lines[0].startswith("error: ") or fragment not in lines[0]:
            failures.append((command[2:], done.returncode, lines))
    assert failures == []
    assert sorted(tmp_path.rglob("*")) == before  # nothing created, not even a folder


def test_help_still_prints_the_usage():
    done = forkserver.run([sys.executable, "-m", "nlpexp.cli", "runs", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("usage: nlpexp runs")


def test_a_tracking_service_s_error_is_the_environment_s_one_line_exit_2():
    """The exception types the W&B and MLflow clients raise for a short WANDB_API_KEY and a failing server."""
    import wandb.errors
    from mlflow.exceptions import MlflowException

    from nlpexp.boundary import error_line, exit_code

    short_key = wandb.errors.AuthenticationError("API key must have 40+ characters, has 5.")
    server = MlflowException("API request to http://127.0.0.1:5000/api/2.0/mlflow/runs/create failed with 500")
    assert (exit_code(short_key), error_line(short_key)) == (
        2, "logger.wandb: AuthenticationError: API key must have 40+ characters, has 5.")
    assert exit_code(server) == 2 and error_line(server).startswith("logger.mlflow: MlflowException: API request")
    assert exit_code(RuntimeError("a bug")) == 1  # anything else stays unexpected


def test_a_signal_while_a_checkpoint_is_written_waits_for_its_seal(compose_run, tmp_path):
    """The stop leaves the checkpoint that was due: a SIGTERM that arrives once checkpoint-2's files are written but
    before its seal is held until the seal is on disk, then ends the run (in a forked child, as run.py would)."""
    import multiprocessing

    from nlpexp.boundary import Interrupted, stop_signals_raise
    from nlpexp.pipeline import run
    from nlpexp.trainer.checkpoints import read_seal

    run_dir = tmp_path / "run"
    cfg = compose_run(*SMOKE, run_dir=run_dir)

    def child():
        import transformers

        library_save = transformers.Trainer._save_checkpoint

        def save_then_signal(self, model, trial):
            library_save(self, model, trial)
            os.kill(os.getpid(), signal.SIGTERM)  # the files are written, the seal is not

        transformers.Trainer._save_checkpoint = save_then_signal
        try:
            with stop_signals_raise():
                run(cfg)
        except Interrupted as err:
            os._exit(128 + err.signum)
        os._exit(3)  # never stopped

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(timeout=300)
    assert process.exitcode == 128 + signal.SIGTERM
    assert read_seal(run_dir / "checkpoints" / "checkpoint-2") is not None  # sealed before the stop
    assert not (run_dir / "checkpoints" / "checkpoint-4").exists()  # and nothing after it
    [record] = _ledger(tmp_path / "ledger.jsonl")
    assert record["status"] == "interrupted"
