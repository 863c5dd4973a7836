"""The private members of transformers' Trainer, and of the accelerate state it creates, that nlpexp uses
(tests/test_adapters_hf.py fails when upstream renames or drops one); everything else goes through callbacks and the
Trainer's public methods."""

from __future__ import annotations

import sys


def loss_sum(trainer) -> float:
    """Sum of the per-step training losses of this train() call so far: logged ones plus those since the last log
    (averaged over processes, as the trainer does when it logs)."""
    from transformers.trainer_pt_utils import nested_gather

    pending = nested_gather(trainer._tr_loss, trainer.args.parallel_mode).mean().item()
    return trainer._total_loss_scalar + pending


def scheduler_created(trainer) -> None:
    """Tell the trainer it built the schedule itself, so that a retry (auto_find_batch_size) builds it again."""
    trainer._created_lr_scheduler = True


def skip_epochs_when(trainer, ended) -> None:
    """No epoch runs while `ended()`: a run resumed from the checkpoint that ended its training takes no step
    (the library would take one more before checking). The guard holds the trainer weakly: a failed run's kept
    traceback holds the guard's frame and function, and must not keep the trainer and its model alive with them."""
    import inspect
    import weakref

    run_epoch = weakref.WeakMethod(trainer._run_epoch)
    has_ended = weakref.WeakMethod(ended) if inspect.ismethod(ended) else (lambda: ended)

    def guarded(*args, **kwargs):
        return None if has_ended()() else run_epoch()(*args, **kwargs)

    trainer._run_epoch = guarded


def reset_accelerator_state() -> None:
    """Forget the AcceleratorState of a finished run (the next run's TrainingArguments would reset it too); the
    process group (the partial state) is kept."""
    accelerate_state = sys.modules.get("accelerate.state")
    if accelerate_state is not None:
        accelerate_state.AcceleratorState._reset_state(reset_partial_state=False)
