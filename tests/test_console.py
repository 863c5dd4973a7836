"""What a newcomer sees: a smoke run's console is short, has no warnings and no library chatter."""

from __future__ import annotations

import os
import subprocess
import sys

from nlpexp.config import PROJECT_ROOT

CHATTER = ("Writing model shards", "Loading weights", "Filter:", "Map:", "{'loss'", "'eval_", "deprecated")


def test_a_smoke_runs_console_is_short_and_quiet(tmp_path, data_root):
    run_dir = tmp_path / "D"
    # as a user's shell has it: no WANDB_MODE=offline (transformers prints a line at import when it is set)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    done = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "run.py"), "task=sbert_nli", "model=tiny_bert", "debug=smoke",
         f"hydra.run.dir={run_dir}"],
        capture_output=True, timeout=300, env={**env, "NLPEXP_DATA_DIR": str(data_root)},
    )
    console = (done.stdout + done.stderr).decode()  # bytes: a progress bar's "\r" redraws are not new lines
    assert done.returncode == 0, console[-3000:]
    assert console.count("\n") <= 25, console
    assert "warn" not in console.lower(), console
    assert not [c for c in CHATTER if c in console], console
    # log lines with numbers (eval results), one named progress bar, the final table
    assert "step 2/4  val/" in console and "train: 100%" in console and "val/spearman_cosine" in console
    run_log = (run_dir / "run.log").read_text()
    assert [f"step {n}/4  loss " in run_log for n in (1, 2, 3, 4)] == [True] * 4  # per-step losses, run.log only
    assert "  loss " not in console


def test_verbose_brings_the_libraries_chatter_back():
    from transformers.utils import logging as hf_logging

    from nlpexp import console

    try:
        console.configure(verbose=True)
        assert hf_logging.is_progress_bar_enabled() and hf_logging.get_verbosity() == hf_logging.WARNING
        console.configure(verbose=False)
        assert not hf_logging.is_progress_bar_enabled() and hf_logging.get_verbosity() == hf_logging.ERROR
    finally:
        console.configure(verbose=False)


def test_log_lines_carry_numbers_not_strings():
    from nlpexp.console import format_logs

    line = format_logs({"eval_spearman_cosine": 0.123456, "eval_runtime": 0.1, "eval_samples_per_second": 0.0,
                        "loss": 1.5, "epoch": 0.25}, 2, 4)
    assert line == "step 2/4  val/spearman_cosine 0.1235  loss 1.5  epoch 0.25"
