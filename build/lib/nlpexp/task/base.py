"""The task contract: setup() loads data and model, train() runs an HF trainer, evaluate() returns metrics."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from nlpexp.data import DataSpec
from nlpexp.model import ModelSpec
from nlpexp.trainer import TrainerSettings


class Task(ABC):
    greater_is_better = True

    def __init__(
        self,
        *,
        monitor: str,
        model: ModelSpec,
        data: DataSpec,
        trainer: TrainerSettings,
        optimizer: functools.partial,
        scheduler: functools.partial,
        run_dir: Path,
        mode: str = "train",
        loss: functools.partial | None = None,
        callbacks: Sequence = (),
        cache_dir: str | None = None,
    ):
        self.monitor = monitor
        self.model_spec = model
        self.data = data
        self.trainer_settings = trainer
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.loss_factory = loss
        self.run_dir = Path(run_dir)
        self.mode = mode
        self.callbacks = list(callbacks)
        # Where tasks that tokenise whole splits keep them for later runs (nlpexp.data.cache); None: nowhere.
        self.cache_dir = cache_dir
        # `train/...` figures of the last trainer.train() (throughput, loss); run() adds them to metrics.json.
        self.train_metrics: dict[str, float] = {}

    @classmethod  # noqa: B027 (an optional hook, empty by default)
    def check_config(cls, cfg) -> None:
        """Refuse, before anything is loaded, a task x model x data x loss combination that cannot work."""

    @property
    def checkpoints_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def best_model_dir(self) -> Path:
        return self.run_dir / "best_model"

    @abstractmethod
    def setup(self) -> None:
        """Load the model and the data the mode needs."""

    @abstractmethod
    def train(self) -> None:
        """Train with the HF trainer, keep the best checkpoint's model in memory and in best_model/."""

    def evaluate(self, role: str) -> dict[str, float]:
        """Metrics of the current model on `role` (validation/test), keys `<split>/<metric>`; {} if no such data.

        After training, the best checkpoint's validation metrics were already computed by the trainer on the
        same model and data: they are reused rather than computed again.
        """
        if role == "validation" and self._best_val_metrics:
            return dict(self._best_val_metrics)
        return self._evaluate(role)

    @abstractmethod
    def _evaluate(self, role: str) -> dict[str, float]:
        """evaluate() without the reuse of the trainer's numbers."""

    _best_val_metrics: dict[str, float] | None = None

    def run_trainer(self, trainer):
        """trainer.train() (resuming as trainer.resume says), then keep its figures and best metrics."""
        output = trainer.train(resume_from_checkpoint=self.resume_from(self.checkpoints_dir))
        self.remember_train_output(output, trainer.state)
        self.remember_best_metrics(trainer.state)
        return output

    def resume_from(self, checkpoints_dir: Path) -> str | None:
        return self.trainer_settings.resume_checkpoint(checkpoints_dir)

    def remember_train_output(self, output, state) -> None:
        """Keep the trainer's own throughput and mean loss; its runtime includes the in-training evaluations,
        whose share is kept as `train/eval_runtime_s`."""
        figures = output.metrics
        self.train_metrics = {
            "train/runtime_s": round(float(figures["train_runtime"]), 2),
            "train/samples_per_second": float(figures["train_samples_per_second"]),
            "train/loss": float(figures["train_loss"]),
            "train/eval_runtime_s": round(sum(e.get("eval_runtime", 0.0) for e in state.log_history), 2),
        }

    def remember_best_metrics(self, state) -> None:
        """Keep the validation metrics the trainer logged for the checkpoint it restored as best."""
        from nlpexp.metrics import from_trainer_logs

        if not state.best_model_checkpoint:
            return
        best_step = int(state.best_model_checkpoint.rsplit("-", 1)[-1])
        for entry in state.log_history:
            if entry.get("step") == best_step and any(k.startswith("eval_") for k in entry):
                self._best_val_metrics = from_trainer_logs(entry, "val")

    def training_callbacks(self) -> list:
        from transformers import EarlyStoppingCallback

        from nlpexp.trainer.callbacks import NonFiniteLossGuard

        patience = self.trainer_settings.early_stopping_patience
        early_stopping = [EarlyStoppingCallback(early_stopping_patience=patience)] if patience else []
        return [NonFiniteLossGuard(), *self.callbacks, *early_stopping]

    def training_arguments(self, args_class, **task_args):
        return self.trainer_settings.training_arguments(
            args_class, self.checkpoints_dir, self.monitor, self.greater_is_better, self.optimizer_factory,
            **task_args,
        )
