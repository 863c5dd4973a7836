"""The run ledger: one JSON line per finished run (single runs and sweep trials) under the outputs root.

Parallel trials append to the same file: each record is one write() of a whole line under an exclusive
lock, so lines never interleave; a reader skips a line it cannot parse instead of failing.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def append(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the lock


def read(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    records, skipped = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                skipped += 1
    if skipped:
        log.warning("%s: skipped %d unreadable line(s)", path, skipped)
    return records
