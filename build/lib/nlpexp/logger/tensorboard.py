"""TensorBoard with the tags of seed 000, plus every task metric."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nlpexp import metrics as metric_names
from nlpexp.logger.base import RunLogger

# task metric -> the seed's tag for it
SEED_TAGS = {"val/loss": "Loss/Val_Epoch", "val/accuracy": "Accuracy/Val_Epoch"}


class TensorBoardLogger(RunLogger):
    def __init__(self, log_dir: str, histograms: bool = True):
        self.log_dir = Path(log_dir)
        self.histograms = histograms
        self._writer = None
        self._purge_step: int | None = None
        self._epoch_losses: list[float] = []
        self._epoch_accuracies: list[float] = []

    @property
    def writer(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=self._purge_step)
        return self._writer

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step > 0 and self._writer is None:
            # Resumed from checkpoint T: drop what the interrupted run logged after T, keep one continuous log.
            self._purge_step = state.global_step + 1

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        step = state.global_step
        if "loss" in logs:
            self.writer.add_scalar("Loss/Train_Batch", logs["loss"], step)
            self._epoch_losses.append(logs["loss"])
        if "train_accuracy" in logs:
            self._epoch_accuracies.append(logs["train_accuracy"])
        if "learning_rate" in logs:
            self.writer.add_scalar("Learning_Rate", logs["learning_rate"], step)
        self._scalars(metric_names.from_trainer_logs(logs, "val"), step)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        if self._epoch_losses:
            self.writer.add_scalar("Loss/Train_Epoch", sum(self._epoch_losses) / len(self._epoch_losses), step)
        if self._epoch_accuracies:
            mean = sum(self._epoch_accuracies) / len(self._epoch_accuracies)
            self.writer.add_scalar("Accuracy/Train_Epoch", mean, step)
        self._epoch_losses, self._epoch_accuracies = [], []
        if self.histograms and model is not None:
            for name, param in model.named_parameters():
                self.writer.add_histogram(f"Parameters/{name}", param.detach().float().cpu(), step)
        self.writer.flush()

    def _scalars(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
            if key in SEED_TAGS:
                self.writer.add_scalar(SEED_TAGS[key], value, step)

    def finish(self, hparams: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        if metrics:
            self._scalars({k: v for k, v in metrics.items() if not k.startswith("val/")}, 0)
            self.writer.add_hparams(_hparam_values(hparams), {f"hparam/{k}": v for k, v in metrics.items()},
                                    run_name=".")
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _hparam_values(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """TensorBoard's hparams plugin takes numbers, strings and bools only."""
    return {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in hparams.items()}
