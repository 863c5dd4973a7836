"""What a run prints (docs/cli.md, "What a run prints"): a `train` bar, one line per evaluation during training, an
`eval` bar for an evaluation outside training, a short final table; a sweep's trial prints nothing of that. Every
figure goes to run.log (the `nlpexp.steps` logger, file only) and metrics.json; library chatter stays off the
console unless `verbose=true`.
"""

from __future__ import annotations

import logging
import sys
from functools import partial

from tqdm.auto import tqdm
from transformers import ProgressCallback
from transformers.trainer_utils import has_length
from transformers.utils import logging as hf_logging

WIDTH = 100
log = logging.getLogger("nlpexp.progress")
steps_log = logging.getLogger("nlpexp.steps")  # conf/hydra/default.yaml: run.log only
_LIBRARY_LOGGERS = ("datasets", "huggingface_hub", "sentence_transformers", "accelerate")
# Figures of the trainer's own end-of-training dict: run() reports them in the metrics table.
_SUMMARY_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos")
_TIMING_KEYS = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "eval_model_preparation_time")
# After the monitored metric, the figures an evaluation line shows first while they fit.
HEADLINE = ("loss", "accuracy", "macro_f1", "f1", "spearman_cosine", "rouge1", "rouge2", "rougeL")

_settings = {"verbose": False, "quiet": False}


def configure(verbose: bool) -> None:
    """Library progress bars, below-error library logs and Python warnings on the console (verbose) or not (the
    default: warnings go to run.log). Process-wide, as the libraries' own switches are."""
    import datasets
    import huggingface_hub.utils
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from sentence_transformers.base import model_card

    _settings["verbose"] = bool(verbose)
    # a sweep's trial: its sweeper prints one line for it; the trial's own lines go to its run.log
    _settings["quiet"] = not verbose and HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    level = logging.WARNING if verbose else logging.ERROR
    hf_logging.set_verbosity(level)
    for name in _LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(level)
    on = "enable" if verbose else "disable"
    for module, switch in ((hf_logging, "progress_bar"), (datasets, "progress_bars"),
                           (huggingface_hub.utils, "progress_bars")):
        getattr(module, f"{on}_{switch}")()
    # sentence-transformers draws its model card's "Computing widget examples" bar with no switch of its own
    model_card.tqdm = tqdm if verbose else partial(tqdm, disable=True)
    _route_warnings(to_console=verbose)
    _use_console_formatter()


def _route_warnings(to_console: bool) -> None:
    """Under run.py, Python warnings (a library's FutureWarning) as `py.warnings` records: run.log always, the
    console only with verbose=true. Not under Hydra's job logging (nlpexp.api in a notebook): Python shows each
    warning once, as it does anyway. Set on every run, so that no handler of an earlier run in the process is kept."""
    handlers = logging.getLogger().handlers
    files = [h for h in handlers if isinstance(h, logging.FileHandler)]
    logging.captureWarnings(bool(files))
    warnings_log = logging.getLogger("py.warnings")
    warnings_log.propagate = not files
    warnings_log.handlers = ([*handlers] if to_console else files) if files else []


def _use_console_formatter() -> None:
    """The console handlers Hydra's job logging made print ConsoleFormatter lines (file handlers keep theirs); a
    sweep's trial prints only its warnings and errors."""
    for handler in logging.getLogger().handlers:
        if getattr(handler, "stream", None) in (sys.stdout, sys.stderr):  # a FileHandler's is its file
            handler.setFormatter(ConsoleFormatter())
            handler.setLevel(logging.WARNING if _settings["quiet"] else logging.NOTSET)


class ConsoleFormatter(logging.Formatter):
    """The console's log lines: the message alone (run.log keeps time, logger and level); a warning says so."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING and not text.startswith(("error:", "warning:")):
            text = f"{record.levelname.lower()}: {text}"
        return text


def format_logs(logs: dict, step: int, max_steps: int) -> str:
    """`step 2/4  train/loss 1.158  train/learning_rate 2e-05  ...`: the trackers' per-step names (run.log)."""
    return "  ".join([f"step {step}/{max_steps}", *_figures(logs).values()])


def evaluation_line(logs: dict, step: int, max_steps: int, monitor: str | None, width: int = WIDTH) -> str:
    """`step 2/4  eval/spearman_cosine 0.1235  eval/loss 1.19  ...`: the monitored metric, then HEADLINE figures,
    then the others, as many as fit in `width` columns."""
    figures = _figures(logs)
    first = [f"eval_{monitor}"] if monitor else []
    order = [*first, *(f"eval_{name}" for name in HEADLINE), *figures]
    line = f"step {step}/{max_steps}"
    for key in dict.fromkeys(k for k in order if k in figures and k.startswith("eval_")):
        if len(line) + 2 + len(figures[key]) > width:
            break
        line += "  " + figures[key]
    return line


def _figures(logs: dict) -> dict[str, str]:
    """Log key -> `eval/x 0.1235`, `train/loss 1.158` for each figure (not the trainer's timings and summary)."""
    figures = {}
    for key, value in logs.items():
        if key not in _SUMMARY_KEYS and key not in _TIMING_KEYS and isinstance(value, int | float):
            name = "eval/" + key[5:] if key.startswith("eval_") else "train/" + key.removeprefix("train_")
            figures[key] = f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}"
    return figures


def report_metrics(run_dir, metrics: dict[str, float], monitor: str) -> None:
    """The run's figures: every one in run.log; on the console the monitored metric and the HEADLINE figures of
    validation and test (with their start and change), the run's time and where the rest is."""
    from nlpexp.metrics import format_table, start_of

    steps_log.info("metrics of %s\n%s", run_dir, format_table(metrics))
    name = monitor.partition("/")[2]
    shown = [key for split in ("val", "test")
             for key in [f"{split}/{n}" for n in dict.fromkeys([name, *HEADLINE]) if f"{split}/{n}" in metrics][:4]]
    subset = {key: metrics[key] for key in [*shown, "time/total_s"] if key in metrics}
    subset.update({twin: metrics[twin] for key in list(subset) if (twin := start_of(key)) in metrics})
    log.info("metrics of %s (all %d: metrics.json, run.log)\n%s", run_dir, len(metrics), format_table(subset))


class ConsoleProgress(ProgressCallback):
    """The trainer's progress: a `train` bar, a line per evaluation during training (no nested bar), an `eval` bar
    outside training, a line when training stops early; every training log in run.log (console: verbose=true)."""

    def __init__(self, verbose: bool = False, quiet: bool = False):
        super().__init__()
        self.verbose, self.quiet = verbose, quiet  # quiet: a sweep's trial, no bars, its lines in run.log

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.training_bar = tqdm(total=state.max_steps, dynamic_ncols=True, desc="train", disable=self.quiet)
        self.current_step = 0

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if self.training_bar is not None:
            return  # during training an evaluation is its line: a second bar under the first redraws both
        if state.is_world_process_zero and self.prediction_bar is None and has_length(eval_dataloader):
            self.prediction_bar = tqdm(total=len(eval_dataloader), dynamic_ncols=True, desc="eval", disable=self.quiet)
        super().on_prediction_step(args, state, control, eval_dataloader=eval_dataloader, **kwargs)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or any(k in logs for k in _SUMMARY_KEYS):
            return
        steps_log.info(format_logs(logs, state.global_step, state.max_steps))
        if any(k.startswith("eval_") for k in logs):
            self._write(evaluation_line(logs, state.global_step, state.max_steps, args.metric_for_best_model))
        elif self.verbose:
            self._write(format_logs(logs, state.global_step, state.max_steps))

    def on_train_end(self, args, state, control, **kwargs):
        super().on_train_end(args, state, control, **kwargs)
        if state.is_world_process_zero and 0 < state.global_step < state.max_steps:
            best = "" if state.best_metric is None else f"; best {args.metric_for_best_model} {state.best_metric:.4g}"
            log.info("stopped early at step %d/%d: %s did not improve for trainer.early_stopping_patience "
                     "evaluations%s", state.global_step, state.max_steps, args.metric_for_best_model, best)

    def _write(self, line: str) -> None:
        """A console line that does not break the progress bar (tqdm clears and redraws it around the line)."""
        if self.training_bar is not None and not self.quiet:
            self.training_bar.write(line)
        else:
            log.info(line)


def close_progress(trainer) -> None:
    """Clear the training bar of a run that stops without on_train_end (a signal, an error): the one error line
    that follows then starts on its own row."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, ConsoleProgress) and callback.training_bar is not None:
            callback.training_bar.leave = False
            callback.training_bar.close()
            callback.training_bar = None


def use_console_progress(trainer) -> None:
    """Swap the trainer's ProgressCallback (raw dicts with numbers as strings) for ConsoleProgress."""
    from transformers.utils.notebook import NotebookProgressCallback  # the Trainer's choice in a notebook

    popped = [trainer.pop_callback(kind) for kind in (ProgressCallback, NotebookProgressCallback)]
    if any(callback is not None for callback in popped):
        trainer.add_callback(ConsoleProgress(_settings["verbose"], _settings["quiet"]))
