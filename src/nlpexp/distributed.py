"""Several processes training one model (`torchrun`, `accelerate launch`): which one this is, what they share.

Both launchers tell each process its place through RANK and WORLD_SIZE; `python run.py` sets neither and is
rank 0 of 1. Rank 0 alone writes the run's files (config, metrics, best model, loggers, ledger line); the
trainers themselves already keep checkpoints and the DDP exchange to the right processes.
"""

from __future__ import annotations

import os

from nlpexp import NlpexpError


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def rank() -> int:
    return int(os.environ.get("RANK", 0))


def is_main_process() -> bool:
    return rank() == 0


def is_multiprocess() -> bool:
    return world_size() > 1


def log_to_console_only() -> None:
    """run.log is rank 0's; the other processes of a multi-process run would interleave their lines with it."""
    import logging

    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        root.removeHandler(handler)
        handler.close()


def check_overrides(argv: list[str]) -> None:
    """Refuse what the processes of one run cannot share: each composes its own config, so the default run dir,
    named after the time each one starts, may differ between them."""
    if not is_multiprocess():
        return
    if any(arg in ("-m", "--multirun") for arg in argv):
        raise NlpexpError(f"{world_size()} processes train one run together; a sweep (-m) is not supported, "
                          f"drop -m or launch with python run.py -m")
    if not any(arg.lstrip("+").startswith("hydra.run.dir=") for arg in argv):
        raise NlpexpError(f"{world_size()} processes must write to one run dir, and the default one is named after "
                          f"the second each starts: pass hydra.run.dir=<dir>")


def average_gradients(module) -> None:
    """Average `module`'s gradients over the processes, as DDP does for the model it wraps: for parameters that
    live outside that model (a loss's own classifier), which each process would otherwise train alone."""
    dist = _process_group()
    if dist is None:
        return
    for param in module.parameters():
        if param.grad is not None:
            dist.all_reduce(param.grad)  # a sum: gloo has no average
            param.grad.div_(dist.get_world_size())


def sum_over_processes(values: list[float]) -> list[float]:
    """`values` summed position by position over the processes (every process must call it)."""
    dist = _process_group()
    if dist is None:
        return list(values)
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, list(values))  # objects: no device to pick, whatever the backend
    return [sum(column) for column in zip(*gathered, strict=True)]


def _process_group():
    """torch.distributed when the trainer has joined several processes in a group, else None."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist
    return None
