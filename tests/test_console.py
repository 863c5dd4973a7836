"""What a newcomer sees: each console (a smoke run of each task kind, a sweep) is at most CONSOLE_LINES lines of at
most 100 columns, with no warning, no cursor codes and no library chatter; the rest goes to run.log.

docs/cli.md quotes CONSOLE_LINES (test_the_docs_quote_the_counted_limit): the number in the docs is this test's.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

import pytest

from nlpexp.config import PROJECT_ROOT
from tests import forkserver

CONSOLE_LINES = 30
WIDTH = 100
CHATTER = ("Writing model shards", "Loading weights", "Computing widget examples", "Filter:", "Map:", "{'loss'",
           "'eval_", "deprecated", "FutureWarning", "env_set", "Launching", "\x1b[")


def _console(tmp_path, data_root, *overrides: str) -> str:
    # as a user's shell has it: no WANDB_MODE=offline (transformers prints a line at import when it is set)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    done = forkserver.run(
        [sys.executable, str(PROJECT_ROOT / "run.py"), *overrides, "debug=smoke"], capture_output=True, timeout=600,
        env={**env, "NLPEXP_DATA_DIR": str(data_root), "COLUMNS": str(WIDTH)}, cwd=tmp_path,
    )
    console = (done.stdout + done.stderr).decode()  # bytes: a progress bar's "\r" redraws are not new lines
    assert done.returncode == 0, console[-3000:]
    return console


def _check_short_narrow_and_quiet(console: str, tmp_path) -> None:
    # "\r" counts as a break here: every redraw of a bar must fit too; paths as long as a user's run dir
    lines = console.replace(str(tmp_path), "/home/user/nlpexp/outputs").splitlines()
    assert console.count("\n") <= CONSOLE_LINES, console
    assert max(len(line) for line in lines) <= WIDTH, [line for line in lines if len(line) > WIDTH]
    assert "warn" not in console.lower(), console
    assert not [c for c in CHATTER if c in console], console


@pytest.mark.parametrize("task", [
    ["task=sbert_nli", "model=tiny_bert"],
    ["task=classification", "data=imdb", "model=tiny_bert"],
    ["task=summarization", "data=dialogsum", "model=tiny_bert2bert"],
    ["task=augsbert", "model=tiny_bert"],
], ids=lambda overrides: overrides[0].partition("=")[2])
def test_a_smoke_runs_console_is_short_narrow_and_quiet(tmp_path, data_root, task):
    run_dir = tmp_path / "D"
    console = _console(tmp_path, data_root, *task, f"hydra.run.dir={run_dir}")
    _check_short_narrow_and_quiet(console, tmp_path)
    task_name = task[0].partition("=")[2]
    monitor = {"sbert_nli": "spearman_cosine", "classification": "accuracy", "summarization": "rouge_sum",
               "augsbert": "spearman_cosine"}[task_name]
    if task_name == "augsbert":  # its four stages, labelled, in order
        stages = re.findall(r"^stage (\d)/4 (\w+): ", console, re.MULTILINE)
        assert stages == [("1", "cross_encoder"), ("2", "candidates"), ("3", "silver"), ("4", "bi_encoder")], console
    # one bar for training (no nested eval bar), one line per evaluation with the monitored metric first
    assert re.search(rf"^step 2/4  eval/{monitor} ", console, re.MULTILINE), console
    assert "eval:" not in console[console.index("train:"):console.rindex("train: 100%")]
    assert f"val/{monitor}" in console.split("metrics of")[1]  # the final table
    run_log = (run_dir / "run.log").read_text()
    assert [f"step {n}/4  train/loss " in run_log for n in (1, 2, 3, 4)] == [True] * 4  # per-step losses, run.log only
    assert "  loss " not in console
    assert console.count("\n") < run_log.count("\n")
    if task_name == "summarization":  # the encoder-decoder's FutureWarning: in run.log, not on the console
        assert "FutureWarning" in run_log


def test_an_evaluation_without_training_says_what_it_does(tmp_path, data_root):
    console = _console(tmp_path, data_root, "task=sbert_nli", "model=tiny_bert", "mode=eval",
                       f"hydra.run.dir={tmp_path / 'E'}")
    _check_short_narrow_and_quiet(console, tmp_path)
    assert "evaluating on validation" in console and "val/spearman_cosine" in console.split("metrics of")[1]


def test_a_sweep_prints_a_line_per_trial_and_its_summary(tmp_path, data_root):
    console = _console(tmp_path, data_root, "-m", "hparams_search=sbert_nli", "model=tiny_bert",
                       "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={tmp_path / 'S'}")
    _check_short_narrow_and_quiet(console, tmp_path)
    assert len(re.findall(r"^trial \d+: val/spearman_cosine = ", console, re.MULTILINE)) == 3, console
    assert "best: trial" in console and "step 2/4" not in console and "metrics of" not in console


def test_the_docs_quote_the_counted_limit():
    cli = (PROJECT_ROOT / "docs" / "cli.md").read_text()
    assert f"at most {CONSOLE_LINES} lines" in cli


def test_an_evaluation_line_fits_and_leads_with_the_monitored_metric():
    from nlpexp.console import evaluation_line, format_logs

    logs = {f"eval_{name}": 0.123456 for name in ("pearson_cosine", "spearman_euclidean", "pearson_dot",
                                                 "spearman_dot", "pearson_max", "spearman_max", "accuracy")}
    logs |= {"eval_loss": 1.5, "eval_spearman_cosine": -0.0479, "eval_runtime": 0.1, "epoch": 0.25}
    line = evaluation_line(logs, 2, 4, "spearman_cosine")
    assert len(line) <= WIDTH and line.startswith("step 2/4  eval/spearman_cosine -0.0479  eval/loss 1.5  eval/accur")
    assert "runtime" not in line and "epoch" not in line
    full = format_logs(logs, 2, 4)  # run.log: every figure
    evaluated = [key[5:] for key in logs if key.startswith("eval_") and key != "eval_runtime"]
    assert len(full) > WIDTH and all(f"eval/{name} " in full for name in evaluated)
    assert "train/epoch 0.25" in full  # the trackers' per-step names


def test_early_stopping_says_so(tmp_path, caplog):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from nlpexp.console import ConsoleProgress

    args = TrainingArguments(output_dir=str(tmp_path), metric_for_best_model="accuracy", report_to=[])
    progress = ConsoleProgress()
    state = TrainerState(max_steps=20, global_step=0)
    progress.on_train_begin(args, state, TrainerControl())
    state.global_step, state.best_metric = 6, 0.75
    with caplog.at_level(logging.INFO, logger="nlpexp.progress"):
        progress.on_train_end(args, state, TrainerControl())
    assert "stopped early at step 6/20: accuracy did not improve" in caplog.text and "best accuracy 0.75" in caplog.text
    caplog.clear()
    state.global_step = 20  # a run that reached max_steps says nothing
    progress.on_train_begin(args, state, TrainerControl())
    with caplog.at_level(logging.INFO, logger="nlpexp.progress"):
        progress.on_train_end(args, state, TrainerControl())
    assert "stopped early" not in caplog.text


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
        logging.captureWarnings(False)


def test_an_offline_wandb_run_says_how_to_upload_it(tmp_path, caplog, monkeypatch):
    from nlpexp.logger.wandb import WandbLogger

    monkeypatch.delenv("WANDB_MODE", raising=False)
    logger = WandbLogger(project="newcomer", dir=str(tmp_path / "wandb"), mode="offline")
    logger.start({"seed": 1})
    with caplog.at_level(logging.INFO, logger="nlpexp"):
        logger.finish({}, {"val/accuracy": 0.5})
    hint = [r.getMessage() for r in caplog.records if "wandb sync" in r.getMessage()]
    assert len(hint) == 1, caplog.text
    folder = Path(hint[0].rsplit("wandb sync ", 1)[1].rstrip("`"))
    assert folder.name.startswith("offline-run-") and folder.is_dir()  # what `wandb sync` uploads
