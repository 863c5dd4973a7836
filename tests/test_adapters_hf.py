"""The private library members nlpexp uses (src/nlpexp/adapters.py): each test fails when upstream renames, drops
or changes one, before a run would misbehave silently."""

from __future__ import annotations

import pytest
import torch


class _Regressor(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, x, y):
        return {"loss": torch.nn.functional.mse_loss(self.linear(x).squeeze(-1), y)}


def _trainer(tmp_path, callbacks=()):
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(0)
    rows = [{"x": torch.randn(2), "y": torch.randn(())} for _ in range(8)]
    args = TrainingArguments(str(tmp_path), max_steps=3, per_device_train_batch_size=4, logging_steps=2,
                             report_to="none", use_cpu=True, save_strategy="no", disable_tqdm=True)
    return Trainer(_Regressor(), args, train_dataset=rows, callbacks=list(callbacks))


def test_loss_sum_is_the_sum_of_the_step_losses(tmp_path):
    from transformers import TrainerCallback

    from nlpexp.adapters import loss_sum

    seen = []

    class AtStepEnd(TrainerCallback):  # the adapter is read when a checkpoint is saved, after a step
        def on_step_end(self, args, state, control, **kwargs):
            seen.append(loss_sum(trainer))

    trainer = _trainer(tmp_path, [AtStepEnd()])
    output = trainer.train()
    assert len(seen) == 3 and seen[0] > 0  # step 1 pending (not logged yet), steps 1-2 logged, step 3 pending
    assert seen[-1] == pytest.approx(output.training_loss * 3, rel=1e-6)


def test_skipped_epochs_take_no_step_and_the_schedule_is_rebuilt(tmp_path):
    from nlpexp.adapters import scheduler_created, skip_epochs_when

    trainer = _trainer(tmp_path)
    skip_epochs_when(trainer, lambda: True)
    trainer.lr_scheduler = object()  # what a first train() left
    scheduler_created(trainer)  # so the trainer builds its own again
    trainer.train()
    assert trainer.state.global_step == 0
    assert isinstance(trainer.lr_scheduler, torch.optim.lr_scheduler.LRScheduler)


def test_accelerator_state_resets_and_keeps_the_partial_state():
    from accelerate.state import AcceleratorState, PartialState

    from nlpexp.adapters import reset_accelerator_state

    AcceleratorState(cpu=True)
    assert AcceleratorState._shared_state
    reset_accelerator_state()
    assert not AcceleratorState._shared_state and PartialState._shared_state
