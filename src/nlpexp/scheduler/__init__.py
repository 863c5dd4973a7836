"""The scheduler group (`conf/scheduler/<name>.yaml`): a learning-rate schedule, completed with the optimizer and
step count at train time (nlpexp.trainer.build). Its keys and ranges are its signature's (nlpexp.derived)."""

from __future__ import annotations

from typing import Annotated, Literal

from nlpexp.rules import Int, Num


def build_scheduler(optimizer, num_training_steps: int, name: Literal["constant", "linear", "cosine"],
                    warmup_steps: Annotated[int, Int(0)] = 0,
                    warmup_ratio: Annotated[float, Num(0, 1, hi_open=True)] = 0.0):
    """transformers.get_scheduler with warmup given as steps or as a ratio of the training steps (the larger wins)."""
    from transformers import get_scheduler

    warmup = max(warmup_steps, int(warmup_ratio * num_training_steps))
    hf_name = "constant_with_warmup" if name == "constant" else name
    return get_scheduler(hf_name, optimizer, num_warmup_steps=warmup, num_training_steps=num_training_steps)
