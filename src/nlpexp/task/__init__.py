"""The task group: the Task contract, here, and one class per task (`nlpexp.task.<module>.<Class>`).

run() calls, in this order:
    validate()      refuse a combination of the built components that cannot work; nothing is loaded yet
    setup()         load the model and the data the mode needs
    train()         mode=train: train with make_trainer() + run_trainer(); the best model stays in memory and
                    goes to best_model/
    evaluate(role)  {"<split>/<metric>": value} for validation and test, from score(role)

A task declares what it needs (`losses`, `needs_labels`, `needs_validation`, `validation_data()`) and validate()
checks it; its `task.*` keys, types and ranges are its constructor's parameters (nlpexp.rules annotations, read by
nlpexp.derived). Validating a config imports the task's module, so a task module imports its training library
(torch, transformers, sentence-transformers) only inside what runs: in a method, or from a sibling module.
"""

from __future__ import annotations

import functools
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from nlpexp import NlpexpError
from nlpexp.data import DataSpec
from nlpexp.rules import Monitor, Name
from nlpexp.trainer import TrainerSettings

log = logging.getLogger(__name__)
EVALUATE_ONLY = {"eval_strategy": "no", "save_strategy": "no", "load_best_model_at_end": False}


class Task(ABC):
    name = "task"                   # as in `task=<name>`, for the messages
    greater_is_better = True
    # The loss classes the task can feed (`loss=`), or their import paths (imported by validate()); None: it trains
    # with a loss of its own and takes none.
    losses: tuple[type | str, ...] | None = None
    loss_choices = ""               # the `loss=` options to suggest when refusing one
    needs_labels = False            # labelled data (data.label_names), e.g. data=allnli|imdb
    needs_validation = False        # training picks the best checkpoint on a validation split (validation_data())
    loss_to_score = False           # the loss takes part in scoring too (its head): needed in every mode
    labelled_data = "e.g. data=allnli|imdb|nsmc"  # what to suggest when the data has no labels
    # trainer.group_by_length=auto: on only where grouped batches were measured to keep the task's metric within
    # 0.003 of random ones (benchmarks/bench_grouping.py, docs/performance.md)
    groups_by_length = False

    def __init__(self, *, monitor: Monitor, model, data: DataSpec, trainer: TrainerSettings,
                 optimizer: functools.partial, scheduler: functools.partial, run_dir: Path, mode: str = "train",
                 loss: functools.partial | None = None, callbacks: Sequence = (), cache_dir: Name | None = None):
        self.monitor = monitor
        self.model_spec = model  # nlpexp.model.ModelSpec (not imported: the model package reaches back into tasks)
        self.data = data
        self.trainer_settings = trainer
        trainer.settle_grouping(self.groups_by_length)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.loss_factory = loss
        self.run_dir = Path(run_dir)
        self.checkpoints_dir, self.best_model_dir = self.run_dir / "checkpoints", self.run_dir / "best_model"
        self.mode = mode
        self.callbacks = list(callbacks)
        # Where tasks that tokenise whole splits keep them for later runs (nlpexp.data.cache); None: nowhere.
        self.cache_dir = cache_dir
        # `train/...` figures of the last trainer.train() (throughput, loss); run() adds them to metrics.json.
        self.train_metrics: dict[str, float] = {}
        # `start/<metric>`: the model as training got it, scored on validation (trainer.evaluate_start).
        self.start_metrics: dict[str, float] = {}
        # The validation metrics training computed for the model it ended with (run_trainer): evaluate() reuses them.
        self.best_val_metrics: dict[str, float] | None = None

    # -- the contract ------------------------------------------------------------------------------------------

    def validate(self) -> None:
        """Refuse, before anything is loaded, what the class declares it cannot work with; a task with more to
        check extends this (and calls it first)."""
        train, loss, name = self.mode == "train", self.loss_factory, self.name
        if self.needs_labels and not self.data.label_names:
            raise NlpexpError(f"task={name} needs labelled data with data.label_names ({self.labelled_data}); "
                              f"data={self.data.name} has none")
        if self.losses is None and loss is not None:
            raise NlpexpError(f"task={name} trains with a loss of its own and takes no loss; drop loss=")
        if self.losses is not None and (train or self.loss_to_score) and loss is None:
            raise NlpexpError(f"task={name} trains with a loss: set loss={self.loss_choices}")
        if self.losses is not None and loss is not None and not issubclass(loss.func, imported(self.losses)):
            raise NlpexpError(f"task={name} cannot feed {loss.func.__name__}; use loss={self.loss_choices}")
        if self.needs_validation and train and not self.has_split("validation"):
            names = " or ".join(f"'{d.name}'" for d in self.validation_data())
            raise NlpexpError(f"task={name} picks the best checkpoint by {self.monitor}, but data {names} has no "
                              f"validation split; add data.splits.validation=[...] (for task.sts: data@task.sts=stsb)")

    def validation_data(self) -> list[DataSpec]:
        """The data score() reads; one of them picks the best checkpoint with its validation split."""
        return [self.data]

    def has_split(self, role: str) -> bool:
        """Whether some data score() reads has the split `role`."""
        return any(data.has(role) for data in self.validation_data())

    @abstractmethod
    def setup(self) -> None:
        """Load the model and the data the mode needs."""

    @abstractmethod
    def train(self) -> None:
        """Train, keep the best checkpoint's model in memory and in best_model/."""

    @abstractmethod
    def score(self, role: str) -> dict[str, float]:
        """The metrics of the current model on `role` (validation/test, a split has_split() finds), keys
        `<split>/<metric>`. The one place a task computes its metrics (its trainer evaluates with it too)."""

    def reuses_validation(self) -> bool:
        """Whether evaluate() may take training's best validation metrics for score("validation")."""
        return True

    def evaluate(self, role: str) -> dict[str, float]:
        """score(role), except that after training the best checkpoint's validation metrics, which the trainer
        computed on the same model and data, are reused; validation also carries the `start/` figures."""
        if role == "validation" and self.best_val_metrics and self.reuses_validation():
            metrics = dict(self.best_val_metrics)
        elif self.has_split(role):
            log.info("evaluating on %s", role)  # an encoder's evaluation can take minutes without a bar
            metrics = self.score(role)
        else:
            metrics = {}
        return {**metrics, **self.start_metrics} if role == "validation" else metrics

    def new_parameters(self) -> list:
        """The parameters this task adds untrained; they learn at optimizer.head_lr."""
        return []

    # -- trainers ----------------------------------------------------------------------------------------------

    def training_arguments(self, args_class, checkpoints_dir: Path | None = None, monitor: str | None = None,
                           **task_args):
        """`args_class` from the trainer settings; outside mode=train a trainer only predicts."""
        only_predicts = {} if self.mode == "train" else EVALUATE_ONLY
        return self.trainer_settings.training_arguments(
            args_class, checkpoints_dir or self.checkpoints_dir, monitor or self.monitor, self.greater_is_better,
            self.optimizer_factory, **task_args, **only_predicts)

    def make_trainer(self, trainer_class, args, **components):
        """A trainer (nlpexp.trainer.build) with the config's optimizer, schedule and batching, the run's callbacks
        and the task's new parameters (at optimizer.head_lr); `components` are the trainer's own (model, datasets,
        loss, evaluator...) and may replace `callbacks` or `new_parameters`."""
        from nlpexp.trainer.build import build_trainer

        components.setdefault("callbacks", self.training_callbacks())
        components.setdefault("new_parameters", self.new_parameters())
        return build_trainer(trainer_class, args, optimizer=self.optimizer_factory, scheduler=self.scheduler_factory,
                             settings=self.trainer_settings, identity=self.checkpoint_identity(), **components)

    def training_callbacks(self) -> list:
        """The run's callbacks (the loggers), NonFiniteLossGuard and early stopping."""
        from transformers import EarlyStoppingCallback

        from nlpexp.trainer.build import NonFiniteLossGuard

        patience = self.trainer_settings.early_stopping_patience
        early_stopping = [EarlyStoppingCallback(early_stopping_patience=patience)] if patience else []
        return [NonFiniteLossGuard(), *self.callbacks, *early_stopping]

    def checkpoint_identity(self) -> dict:
        """What a checkpoint of this run was trained on (nlpexp.trainer.checkpoints): resuming another is refused."""
        from nlpexp.trainer.checkpoints import checkpoint_identity

        return checkpoint_identity(type(self).__name__, self.model_spec, self.data, self.loss_factory)

    def run_trainer(self, trainer, checkpoints_dir: Path | None = None, figures: bool = True, resume: bool = True):
        """Train (resuming from `checkpoints_dir` as trainer.resume says); with `figures`, the run's own training:
        `start/` scored first, its `train/` figures and best validation metrics kept. Returns the TrainOutcome."""
        from nlpexp.trainer.build import fit

        if figures:
            self.evaluate_start()
        resume = self.trainer_settings.resume_checkpoint(checkpoints_dir or self.checkpoints_dir,
                                                         self.checkpoint_identity()) if resume else None
        if figures and self.start_metrics and resume is None:  # a resumed run drew them at step 0 the first time
            for logger in (c for c in self.callbacks if hasattr(c, "start_scores")):
                logger.start_scores(self.start_metrics)
        outcome = fit(trainer, resume)
        if figures:
            self.train_metrics, self.best_val_metrics = outcome.train_metrics, outcome.best_val_metrics
        return outcome

    def evaluate_start(self) -> None:
        """Score the model training starts from on validation, once, as `start/<metric>`: the before of the
        before -> after that metrics.json, the ledger and the console table show."""
        from nlpexp.metrics import as_start

        if self.trainer_settings.evaluate_start and not self.start_metrics and self.has_split("validation"):
            log.info("evaluating the starting model on validation (trainer.evaluate_start=false skips it)")
            self.start_metrics = as_start(self.score("validation"))


def imported(classes: Sequence[type | str]) -> tuple[type, ...]:
    """`classes`, an import path ("package.module.Class") imported: a task names the library classes it feeds by
    path, so that reading its module (the schema does, for its keys) imports no library."""
    from hydra.utils import get_class

    return tuple(get_class(item) if isinstance(item, str) else item for item in classes)
