"""Every trainer of every task is built by build_trainer and trained by fit.

The library's trainer classes are used as they are (a task subclasses one only to override a public method);
nlpexp reaches them through public seams: the optimizer (the config's, with the task's new parameters at
optimizer.head_lr) is handed over built, the schedule comes from the config's partial, length-grouped batches are
the sentence-transformers trainers' `args.batch_sampler` callable, and the rest are callbacks: the run's own (the
loggers, NonFiniteLossGuard, early stopping) and, last, SealedCheckpoints.
"""

from __future__ import annotations

import functools
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from transformers import TrainerCallback

from nlpexp import NlpexpError
from nlpexp.adapters.transformers import loss_sum, scheduler_created, skip_epochs_when
from nlpexp.boundary import hold_stop_signals, release_stop_signals
from nlpexp.trainer.checkpoints import read_seal, seal
from nlpexp.trainer.optimization import make_optimizer


class NonFiniteLossGuard(TrainerCallback):
    """Stop the run with one clear line when the training loss becomes NaN or infinite.

    Needs `logging_nan_inf_filter=False` (set by TrainerSettings), or the trainer hides such losses.
    """

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise NlpexpError(
                f"training loss became {loss} at step {state.global_step}; lower optimizer.lr, check the data "
                f"for broken rows, or use trainer.precision=32"
            )


@dataclass
class TrainOutcome:
    """What one training leaves: its `train/` figures and the validation metrics of the checkpoint it ended with
    (None when the trainer kept no best checkpoint)."""
    train_metrics: dict[str, float]
    best_val_metrics: dict[str, float] | None


class SealedCheckpoints(TrainerCallback):
    """Added last by nlpexp.trainer.build: seals each checkpoint once the trainer and every callback before this
    one (e.g. the summarization predictions) have written into it; a stop signal waits for the seal."""

    def __init__(self, trainer, identity: dict | None):
        self.trainer, self.identity = trainer, identity
        self.loss_before, self.resumed_step = 0.0, None

    def resume(self, checkpoint: str | None) -> None:
        record = read_seal(checkpoint) if checkpoint else None
        self.loss_before = float(record["loss_sum"]) if record else 0.0
        self.resumed_step = int(record["step"]) if record else None

    def training_had_ended(self) -> bool:
        """Resumed from the checkpoint that ended the training (its last step, or early stopping)."""
        from transformers import EarlyStoppingCallback

        state = self.trainer.state
        stopped_early = any(isinstance(cb, EarlyStoppingCallback) and
                            cb.early_stopping_patience_counter >= cb.early_stopping_patience
                            for cb in self.trainer.callback_handler.callbacks)
        return self.resumed_step is not None and (state.global_step >= state.max_steps or stopped_early)

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_save:  # set by the flow callback, the first one: the trainer saves next
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if args.should_save and folder.exists():
                shutil.rmtree(folder)  # a leftover of a killed save: never mix its files into this one
            hold_stop_signals()  # SIGINT/SIGTERM wait until this checkpoint is sealed: the stop leaves it whole

    on_epoch_end = on_step_end

    def on_save(self, args, state, control, **kwargs):
        try:
            losses = self.loss_before + loss_sum(self.trainer)  # every process: the sum gathers over them
            if args.should_save:
                seal(Path(args.output_dir) / f"checkpoint-{state.global_step}", state.global_step, losses,
                     self.identity)
        finally:
            release_stop_signals()  # a stop signal that came while saving ends the run now


def build_trainer(trainer_class, args, *, optimizer: functools.partial, scheduler: functools.partial, settings,
                  identity: dict | None, new_parameters=(), callbacks=(), **components):
    """`trainer_class` (a library trainer) with the config's optimizer, schedule and batching, `callbacks`, and
    sealed checkpoints of what `identity` names; `components` are the trainer's own (model, datasets, loss...)."""
    from nlpexp.console import use_console_progress
    from nlpexp.trainer.batching import LengthGrouping

    if settings.batches_by_length and hasattr(args, "batch_sampler"):  # the sentence-transformers trainers
        args.batch_sampler = LengthGrouping(components["model"], settings.max_tokens_per_batch, args.batch_sampler)
    trainer = trainer_class(args=args, callbacks=list(callbacks), **components)
    trainer.optimizer = make_optimizer(trainer, optimizer, list(new_parameters))
    trainer.create_scheduler = functools.partial(_create_scheduler, trainer, scheduler)
    use_console_progress(trainer)
    sealed = SealedCheckpoints(trainer, identity)
    trainer.add_callback(sealed)  # last: after the callbacks that add files to a checkpoint
    skip_epochs_when(trainer, sealed.training_had_ended)
    return trainer


def _create_scheduler(trainer, factory: functools.partial, num_training_steps: int, optimizer=None):
    if trainer.lr_scheduler is None:
        trainer.lr_scheduler = factory(optimizer=optimizer or trainer.optimizer, num_training_steps=num_training_steps)
        scheduler_created(trainer)
    return trainer.lr_scheduler


def fit(trainer, resume: str | None) -> TrainOutcome:
    """trainer.train(), resuming from `resume`; a resumed run's `train/mean_loss` is the mean over all its steps."""
    from nlpexp.console import close_progress
    from nlpexp.metrics import from_trainer_logs

    for callback in trainer.callback_handler.callbacks:  # those that keep state of their own in a checkpoint
        if hasattr(callback, "resume"):
            callback.resume(resume)
    sealed = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, SealedCheckpoints))
    try:
        output = trainer.train(resume_from_checkpoint=resume)
    except BaseException:
        close_progress(trainer)
        raise
    finally:
        release_stop_signals()  # a save that failed before its seal holds them no longer
    state, figures = trainer.state, output.metrics
    loss = figures["train_loss"]
    if sealed.resumed_step is not None:  # the library averages over the steps of this train() call only
        loss = (sealed.loss_before + loss * (state.global_step - sealed.resumed_step)) / max(state.global_step, 1)
    best = None
    if state.best_model_checkpoint:
        best_step = int(state.best_model_checkpoint.rsplit("-", 1)[-1])
        best = next((from_trainer_logs(e, "val") for e in reversed(state.log_history)
                     if e.get("step") == best_step and any(k.startswith("eval_") for k in e)), None)
    # the trainer's runtime includes the in-training evaluations, whose share is kept as train/eval_runtime_s
    return TrainOutcome({"train/runtime_s": round(float(figures["train_runtime"]), 2),
                         "train/samples_per_second": float(figures["train_samples_per_second"]),
                         "train/mean_loss": float(loss),
                         "train/eval_runtime_s": round(sum(e.get("eval_runtime", 0.0) for e in state.log_history), 2)},
                        best)
