"""A library's warnings once per sweep. submitit polls SLURM's accounting (sacct) every few seconds and logs each
failed poll, `Call #N - Bypassing sacct error ...`, on its own stdout and stderr handlers and again through the
root logger: three lines a poll. During a sweep each distinct warning (its call number left out) is logged once,
through the sweep's own logging only. (What sacct itself prints on stderr bypasses logging and is not affected.)
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import re
from collections.abc import Iterator

_CALL_NUMBER = re.compile(r"^Call #\d+ - ")


class OncePerSweep(logging.Filter):
    """Passes a warning (or worse) the first time its text is seen; lower levels always."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.levelno, _CALL_NUMBER.sub("", record.getMessage()))
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


@contextlib.contextmanager
def library_warnings_once(name: str = "submitit") -> Iterator[OncePerSweep]:
    """Within the block, logger `name` sends each distinct warning once, through the root logger's handlers."""
    with contextlib.suppress(ImportError):  # first: the package adds its handlers when imported (submitit does)
        importlib.import_module(name)
    logger = logging.getLogger(name)
    handlers, propagate = list(logger.handlers), logger.propagate
    once = OncePerSweep()
    for handler in handlers:
        logger.removeHandler(handler)
    logger.propagate = True
    logger.addFilter(once)
    try:
        yield once
    finally:
        logger.removeFilter(once)
        logger.propagate = propagate
        for handler in handlers:
            logger.addHandler(handler)
