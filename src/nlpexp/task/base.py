"""The task contract. run() calls, in this order:

    validate()      refuse a combination of the built components that cannot work; nothing is loaded yet
    setup()         load the model and the data the mode needs
    train()         mode=train: train with a trainer built by make_trainer(); the best model stays in memory and
                    goes to best_model/
    evaluate(role)  {"<split>/<metric>": value} for validation and test, from score(role)

A task declares what it needs (`losses`, `needs_labels`, `needs_validation`) and validate() checks it, with what a
task adds in its own validate(); score() is the one metrics hook: evaluate() adds the reuse of the trainer's best
validation metrics and the `start/` figures around it. The schema (nlpexp.schema) checked each setting's type and
range before anything was built; validate() checks how the built components go together.
"""

from __future__ import annotations

import functools
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from nlpexp.data import DataSpec
from nlpexp.errors import NlpexpError
from nlpexp.model import ModelSpec
from nlpexp.trainer import TrainerSettings

log = logging.getLogger(__name__)


class Task(ABC):
    name = "task"                   # as in `task=<name>`, for the messages
    greater_is_better = True
    # The loss classes the task can feed (`loss=`); None: it trains with a loss of its own and takes none.
    losses: tuple[type, ...] | None = None
    loss_choices = ""               # the `loss=` options to suggest when refusing one
    needs_labels = False            # labelled data (data.label_names), e.g. data=allnli|imdb
    needs_validation = False        # training picks the best checkpoint on the validation split of `data`
    labelled_data = "e.g. data=allnli|imdb|nsmc"  # what to suggest when the data has no labels

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
        # `start/<metric>`: the model as training got it, scored on validation (trainer.evaluate_start).
        self.start_metrics: dict[str, float] = {}
        self._best_val_metrics: dict[str, float] | None = None

    # -- the contract ------------------------------------------------------------------------------------------

    def validate(self) -> None:
        """Refuse, before anything is loaded, a task x model x data x loss combination that cannot work: what the
        class declares, here; a task with more to check extends this (and calls it first)."""
        if self.needs_labels and not self.data.label_names:
            raise NlpexpError(f"task={self.name} needs labelled data with data.label_names ({self.labelled_data}); "
                              f"data={self.data.name} has none")
        if self.losses is None and self.loss_factory is not None:
            raise NlpexpError(f"task={self.name} trains with a loss of its own and takes no loss; drop loss=")
        if self.losses is not None and self.mode == "train" and self.loss_factory is None:
            raise NlpexpError(f"task={self.name} trains with a loss: set loss={self.loss_choices}")
        if self.losses is not None and self.loss_factory is not None \
                and not issubclass(self.loss_factory.func, self.losses):
            raise NlpexpError(f"task={self.name} cannot feed {self.loss_factory.func.__name__}; use "
                              f"loss={self.loss_choices}")
        if self.needs_validation and self.mode == "train" and not self.data.has("validation"):
            raise NlpexpError(f"task={self.name} picks the best checkpoint by {self.monitor}, but data "
                              f"'{self.data.name}' has no validation split; add data.splits.validation=[...]")

    @abstractmethod
    def setup(self) -> None:
        """Load the model and the data the mode needs."""

    @abstractmethod
    def train(self) -> None:
        """Train with a trainer from make_trainer(), keep the best checkpoint's model in memory and in best_model/."""

    @abstractmethod
    def score(self, role: str) -> dict[str, float]:
        """The metrics of the current model on `role` (validation/test), keys `<split>/<metric>`; {} if the data
        has no such split. The one place a task computes its metrics (during training too, where its trainer
        evaluates with it)."""

    def evaluate(self, role: str) -> dict[str, float]:
        """score(role), except that after training the best checkpoint's validation metrics, which the trainer
        computed on the same model and data, are reused; validation also carries the `start/` figures."""
        if role == "validation" and self._best_val_metrics:
            metrics = dict(self._best_val_metrics)
        else:
            log.info("evaluating on %s", role)  # an encoder's evaluation can take minutes without a bar
            metrics = self.score(role)
        return {**metrics, **self.start_metrics} if role == "validation" else metrics

    def evaluate_start(self) -> None:
        """Score the model training starts from on validation, once, as `start/<metric>`: the before of the
        before -> after that metrics.json, the ledger and the console table show (trainer.evaluate_start=false
        skips it)."""
        from nlpexp.metrics import as_start

        if self.trainer_settings.evaluate_start and not self.start_metrics:
            log.info("evaluating the starting model on validation (trainer.evaluate_start=false skips it)")
            self.start_metrics = as_start(self.score("validation"))

    def new_parameters(self) -> list:
        """The parameters this task adds untrained; they learn at optimizer.head_lr."""
        return []

    # -- trainers ----------------------------------------------------------------------------------------------

    @property
    def checkpoints_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def best_model_dir(self) -> Path:
        return self.run_dir / "best_model"

    def make_trainer(self, trainer_class, args, **components):
        """Every trainer of every task is built here, with the config's optimizer, schedule and batching, the run's
        callbacks and the task's new parameters (at optimizer.head_lr); `components` are the trainer's own
        (model, datasets, loss, evaluator...) and may replace `callbacks` or `new_parameters`."""
        components.setdefault("callbacks", self.training_callbacks())
        components.setdefault("new_parameters", self.new_parameters())
        return trainer_class(args=args, optimizer_factory=self.optimizer_factory,
                             scheduler_factory=self.scheduler_factory, trainer_settings=self.trainer_settings,
                             **components)

    def run_trainer(self, trainer):
        """trainer.train() (resuming as trainer.resume says), then keep its figures and best metrics."""
        self.evaluate_start()
        resume = self.resume_from(self.checkpoints_dir)
        if self.start_metrics and resume is None:  # a resumed run drew them at step 0 the first time
            for logger in (c for c in self.callbacks if hasattr(c, "start_scores")):
                logger.start_scores(self.start_metrics)
        try:
            output = trainer.train(resume_from_checkpoint=resume)
        except BaseException:
            from nlpexp.console import close_progress

            close_progress(trainer)
            raise
        self.remember_train_output(output, trainer.state)
        self.remember_best_metrics(trainer.state)
        return output

    def resume_from(self, checkpoints_dir: Path) -> str | None:
        return self.trainer_settings.resume_checkpoint(checkpoints_dir, self.checkpoint_identity())

    def checkpoint_identity(self) -> dict:
        """What a checkpoint of this run was trained on, by content (nlpexp.trainer.identity); resuming a checkpoint
        of anything else is refused."""
        from nlpexp.trainer.identity import checkpoint_identity

        return checkpoint_identity(type(self).__name__, self.model_spec, self.data, self.loss_factory)

    def remember_train_output(self, output, state) -> None:
        """Keep the trainer's own throughput and mean loss; its runtime includes the in-training evaluations,
        whose share is kept as `train/eval_runtime_s`."""
        figures = output.metrics
        self.train_metrics = {
            "train/runtime_s": round(float(figures["train_runtime"]), 2),
            "train/samples_per_second": float(figures["train_samples_per_second"]),
            "train/mean_loss": float(figures["train_loss"]),
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

        from nlpexp.trainer.callbacks import CheckpointIdentity, NonFiniteLossGuard

        patience = self.trainer_settings.early_stopping_patience
        early_stopping = [EarlyStoppingCallback(early_stopping_patience=patience)] if patience else []
        return [NonFiniteLossGuard(), CheckpointIdentity(self.checkpoint_identity()), *self.callbacks,
                *early_stopping]

    def training_arguments(self, args_class, **task_args):
        return self.trainer_settings.training_arguments(
            args_class, self.checkpoints_dir, self.monitor, self.greater_is_better, self.optimizer_factory,
            **task_args,
        )
