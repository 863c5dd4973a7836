"""The run ledger: one JSON line per run attempt (single runs and sweep trials) under the outputs root.

Parallel trials append to the same file under an exclusive lock. A line is written whole or not at all:
short writes are continued, and when the disk is full (or the file size limit is hit) the file is cut back
to its size before the write and the error is raised, so no half line stays to swallow the next record.
A line is strict JSON: a NaN or infinite metric (recorded by the failed run it failed) is written as null.
A reader reports a torn line (left by an older writer, or by a crash of the machine) with its file:line and
still reads the record glued after it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path

from nlpexp.io import finite_or_null, strict_dumps

log = logging.getLogger(__name__)


def append(path: Path, record: dict) -> None:
    """Append `record` as one line; raises OSError (the file unchanged) if it cannot be written whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (strict_dumps(finite_or_null(record), path, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # a torn last line: never glue this record to it
        try:
            _write_all(fd, line)
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)  # no partial line left behind
            raise
    finally:
        os.close(fd)  # closing releases the lock


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(f"write returned {written}")
        view = view[written:]


def read(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    records = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if isinstance(record, dict):
                records.append(record)
                continue
            glued = _glued_record(line)
            log.warning("%s:%d: torn line (a write cut short)%s", path, number,
                        "; read the record glued after it" if glued else "; skipped")
            if glued is not None:
                records.append(glued)
    return records


def _glued_record(line: str) -> dict | None:
    """The whole record that follows a torn one on the same line, if any: the first '{' from which the rest of
    the line parses as an object (a suffix starting inside the torn part cannot parse: it ends abruptly)."""
    start = line.find("{", 1)
    while start != -1:
        try:
            record = json.loads(line[start:])
            if isinstance(record, dict):
                return record
        except json.JSONDecodeError:
            pass
        start = line.find("{", start + 1)
    return None
