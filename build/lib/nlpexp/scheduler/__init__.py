"""The scheduler group: a learning-rate schedule completed with the optimizer and step count at train time."""

from __future__ import annotations

from nlpexp.errors import NlpexpError

NAMES = ("constant", "linear", "cosine")


def build_scheduler(optimizer, num_training_steps: int, name: str, warmup_steps: int = 0, warmup_ratio: float = 0.0):
    """transformers.get_scheduler with warmup given as steps or as a ratio of the training steps (the larger wins)."""
    from transformers import get_scheduler

    check_schedule(name, warmup_steps, warmup_ratio)
    warmup = max(warmup_steps, int(warmup_ratio * num_training_steps))
    hf_name = "constant_with_warmup" if name == "constant" else name
    return get_scheduler(hf_name, optimizer, num_warmup_steps=warmup, num_training_steps=num_training_steps)


def check_schedule(name: str, warmup_steps: int = 0, warmup_ratio: float = 0.0) -> None:
    if name not in NAMES:
        raise NlpexpError(f"scheduler.name must be one of {NAMES}, got {name!r}")
    if not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise NlpexpError(f"scheduler.warmup_steps must be an integer >= 0, got {warmup_steps!r}")
    if not isinstance(warmup_ratio, int | float) or not 0.0 <= warmup_ratio < 1.0:
        raise NlpexpError(f"scheduler.warmup_ratio must be in [0, 1), got {warmup_ratio!r}")
