"""The scheduler group (`conf/scheduler/<name>.yaml`): a learning-rate schedule, completed with the optimizer and
step count at train time (nlpexp.trainer.build)."""

from __future__ import annotations

SCHEDULERS = ("constant", "linear", "cosine")  # nlpexp.schema checks scheduler.name against these


def build_scheduler(optimizer, num_training_steps: int, name: str, warmup_steps: int = 0, warmup_ratio: float = 0.0):
    """transformers.get_scheduler with warmup given as steps or as a ratio of the training steps (the larger wins)."""
    from transformers import get_scheduler

    warmup = max(warmup_steps, int(warmup_ratio * num_training_steps))
    hf_name = "constant_with_warmup" if name == "constant" else name
    return get_scheduler(hf_name, optimizer, num_warmup_steps=warmup, num_training_steps=num_training_steps)
