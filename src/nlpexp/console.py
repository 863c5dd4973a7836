"""What a run prints: one progress bar per phase, log lines with numbers, the final table.

Library chatter (weight loading and shard writing bars, datasets' Filter/Map bars, the trainers' raw log dicts,
their informational warnings) is off unless `verbose=true`. Every training log (per-step losses too) still goes
to run.log through the `nlpexp.steps` logger, which Hydra's job logging sends to the file only.
"""

from __future__ import annotations

import logging

from tqdm.auto import tqdm
from transformers import ProgressCallback
from transformers.trainer_utils import has_length
from transformers.utils import logging as hf_logging

log = logging.getLogger("nlpexp.progress")
steps_log = logging.getLogger("nlpexp.steps")  # conf/hydra/default.yaml: run.log only
_LIBRARY_LOGGERS = ("datasets", "huggingface_hub", "sentence_transformers", "accelerate")
# Figures of the trainer's own end-of-training dict: run() reports them in the metrics table.
_SUMMARY_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos")
_TIMING_KEYS = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second")


_settings = {"verbose": False}


def configure(verbose: bool) -> None:
    """Library progress bars and below-error library logs on (verbose) or off (the default). Process-wide, as
    the libraries' own switches are."""
    import datasets
    import huggingface_hub.utils

    _settings["verbose"] = bool(verbose)
    if verbose:
        hf_logging.set_verbosity_warning()
        hf_logging.enable_progress_bar()
        datasets.enable_progress_bars()
        huggingface_hub.utils.enable_progress_bars()
    else:
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        datasets.disable_progress_bars()
        huggingface_hub.utils.disable_progress_bars()
    for name in _LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if verbose else logging.ERROR)


def format_logs(logs: dict, step: int, max_steps: int) -> str:
    """`step 2/4  loss 1.158  learning_rate 2e-05  ...`: numbers as numbers, eval_ keys as val/."""
    parts = [f"step {step}/{max_steps}"]
    for key, value in logs.items():
        if key in _SUMMARY_KEYS or key in _TIMING_KEYS or not isinstance(value, int | float):
            continue
        name = "val/" + key.removeprefix("eval_") if key.startswith("eval_") else key
        parts.append(f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}")
    return "  ".join(parts)


class ConsoleProgress(ProgressCallback):
    """The trainer's progress bars, named (train, eval); evaluation results as one log line each (console and run.log);
    training losses to run.log only (the console with verbose=true)."""

    def __init__(self, verbose: bool = False):
        super().__init__()
        self.verbose = verbose

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.training_bar = tqdm(total=state.max_steps, dynamic_ncols=True, desc="train")
        self.current_step = 0

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if state.is_world_process_zero and self.prediction_bar is None and has_length(eval_dataloader):
            # named when made: renaming a bar later redraws it, a new line on a non-terminal
            self.prediction_bar = tqdm(total=len(eval_dataloader), leave=self.training_bar is None,
                                       dynamic_ncols=True, desc="eval")
        super().on_prediction_step(args, state, control, eval_dataloader=eval_dataloader, **kwargs)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or any(k in logs for k in _SUMMARY_KEYS):
            return
        line = format_logs(logs, state.global_step, state.max_steps)
        if any(k.startswith("eval_") for k in logs) or self.verbose:
            self._write(line)
        steps_log.info(line)

    def _write(self, line: str) -> None:
        """A console line that does not break the progress bar (tqdm clears and redraws it around the line)."""
        if self.training_bar is not None:
            self.training_bar.write(line)
        else:
            log.info(line)


def use_console_progress(trainer) -> None:
    """Swap the trainer's ProgressCallback (raw dicts with numbers as strings) for ConsoleProgress."""
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(ConsoleProgress(_settings["verbose"]))
