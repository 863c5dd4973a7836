"""Every trainer of every task is built by build_trainer and trained by fit.

The library's trainer classes are used as they are (a task subclasses one only to override a public method);
nlpexp reaches them through public seams: the optimizer (the config's, with the task's new parameters at
optimizer.head_lr) is handed over built, the schedule comes from the config's partial, length-grouped batches are
the sentence-transformers trainers' `args.batch_sampler` callable, and the rest are callbacks: the run's own (the
loggers, NonFiniteLossGuard, early stopping) and, last, SealedCheckpoints.

Parameters a task adds untrained (the SoftmaxLoss head, a classification head, the cross-attention of a
warm-started encoder-decoder) start far from where they should be, and at a fine-tuning rate they hardly move in a
short run: `optimizer.head_lr` gives them their own rate (null: the encoder's `optimizer.lr`). Measured on the main
job (SBERT-NLI, MiniLM, 250 steps of 16): with one rate of 2e-5 the head stays at chance (SNLI accuracy 0.48, the
loss at ln 3); plain sentence-transformers with head 2e-3 reaches 0.579.
"""

from __future__ import annotations

import functools
import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from transformers import TrainerCallback

from nlpexp import NlpexpError
from nlpexp.adapters import loss_sum, scheduler_created, skip_epochs_when
from nlpexp.boundary import hold_stop_signals, release_stop_signals
from nlpexp.trainer.checkpoints import read_seal, seal

log = logging.getLogger(__name__)  # run.log only (conf/hydra/default.yaml): which parameters learn at head_lr
GROUP_KEYS = ("optimizer_dict", "params")  # where the HF trainers hand over parameter groups
# Keys of the optimizer group that are no arguments of the optimizer class: weight decay goes per group (none on
# biases and norms, as in HF), head_lr to the new parameters' groups.
OWN_KEYS = ("weight_decay", "head_lr")


class NonFiniteLossGuard(TrainerCallback):
    """Stop the run with one clear line when the training loss becomes NaN or infinite (TrainerSettings sets
    `logging_nan_inf_filter=False`, or the trainer would hide such losses)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise NlpexpError(f"training loss became {loss} at step {state.global_step}; lower optimizer.lr, check "
                              f"the data for broken rows, or use trainer.precision=32")


@dataclass
class TrainOutcome:
    """What one training leaves: its `train/` figures and the validation metrics of the checkpoint it ended with
    (None when the trainer kept no best checkpoint)."""
    train_metrics: dict[str, float]
    best_val_metrics: dict[str, float] | None


class SealedCheckpoints(TrainerCallback):
    """Added last by build_trainer: seals each checkpoint once the trainer and every callback before this
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
                     self.identity, model_only=args.save_only_model)
        finally:
            release_stop_signals()  # a stop signal that came while saving ends the run now


def build_trainer(trainer_class, args, *, optimizer: functools.partial, scheduler: functools.partial, settings,
                  identity: dict | None, new_parameters=(), callbacks=(), **components):
    """`trainer_class` (a library trainer) with the config's optimizer, schedule and batching, `callbacks`, and
    sealed checkpoints of what `identity` names; `components` are the trainer's own (model, datasets, loss...)."""
    from nlpexp.console import use_console_progress

    if settings.batches_by_length and hasattr(args, "batch_sampler"):  # the sentence-transformers trainers
        from nlpexp.trainer.batching import LengthGrouping

        args.batch_sampler = LengthGrouping(components["model"], settings.max_tokens_per_batch, args.batch_sampler)
    trainer = trainer_class(args=args, callbacks=list(callbacks), **components)
    trainer.optimizer = make_optimizer(trainer, optimizer, list(new_parameters))
    trainer.create_scheduler = functools.partial(_create_scheduler, trainer, scheduler)
    use_console_progress(trainer)
    sealed = SealedCheckpoints(trainer, identity)
    trainer.add_callback(sealed)  # last: after the callbacks that add files to a checkpoint
    skip_epochs_when(trainer, sealed.training_had_ended)
    return trainer


def make_optimizer(trainer, factory: functools.partial, new_parameters: Sequence):
    """The config's optimizer over the parameter groups the trainer would build itself (a sentence-transformers
    trainer adds its loss's own parameters, e.g. the SoftmaxLoss head), the new parameters moved to head_lr."""
    _, kwargs = trainer.get_optimizer_cls_and_kwargs(trainer.args, trainer.model)
    groups = next((kwargs[k] for k in GROUP_KEYS if k in kwargs), None)
    if not groups:  # the groups transformers' create_optimizer builds when none are handed over
        decay = set(trainer.get_decay_parameter_names(trainer.model))
        trainable = [(n, p) for n, p in trainer.model.named_parameters() if p.requires_grad]
        groups = [{"params": [p for n, p in trainable if n in decay], "weight_decay": trainer.args.weight_decay},
                  {"params": [p for n, p in trainable if n not in decay], "weight_decay": 0.0}]
    head_lr = factory.keywords.get("head_lr")
    if head_lr is not None and new_parameters:
        log.info("optimizer: %d new parameter tensor(s) (%d values) at lr %g, the others at lr %g",
                 len(new_parameters), sum(p.numel() for p in new_parameters), head_lr, factory.keywords["lr"])
        groups = with_head_lr(groups, new_parameters, head_lr)
    settings = {k: v for k, v in factory.keywords.items() if k not in OWN_KEYS}
    if "betas" in settings:
        settings["betas"] = tuple(settings["betas"])  # a YAML list
    return factory.func(groups, **settings)


def with_head_lr(groups: list[dict], new_parameters: Sequence, head_lr: float) -> list[dict]:
    """`groups` with the new parameters moved into groups of their own at `head_lr` (weight decay kept); the
    others' groups come first, so that the logged learning rate stays the encoder's."""
    new_ids = {id(p) for p in new_parameters}
    kept, moved = [], []
    for group in groups:
        params = list(group["params"])
        kept.append({**group, "params": [p for p in params if id(p) not in new_ids]})
        if new := [p for p in params if id(p) in new_ids]:
            moved.append({**group, "params": new, "lr": head_lr})
    found = sum(len(g["params"]) for g in moved)
    if found != len(new_ids):
        raise RuntimeError(f"{len(new_ids) - found} of the {len(new_ids)} new parameters are not among the "
                           f"trainer's parameters; they would not be trained")
    return kept + moved


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
