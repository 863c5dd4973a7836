"""The files nlpexp writes for other tools to read: run dirs' files, the ledger, provenance.json (what made a run:
code, library versions, data file hashes, seed, device). Each is written atomically (a reader sees the old file or
the new one, never half) and as strict JSON; the ledger, one line per run attempt appended under an exclusive
lock, gets a line whole or not at all (docs/reliability.md: "Strict JSON", "The ledger survives a full disk").
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import math
import os
import platform
import sys
import tempfile
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from nlpexp import NlpexpError
from nlpexp.paths import git_state

log = logging.getLogger(__name__)


_UMASK = os.umask(0o022)  # the only way to read it is to set it; put back at once (at import, single-threaded)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file renamed over it. The file gets the mode open() would give
    it (0644 under the usual umask; an existing file keeps its own), not mkstemp's 0600: run dirs and sweep
    summaries are read by the group on a shared server."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o7777 if path.is_file() else _FILE_MODE
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def strict_dumps(obj: Any, where: Path | str, **kwargs) -> str:
    """json.dumps that refuses NaN/Infinity (NlpexpError naming `where` and the key) instead of writing them."""
    try:
        return json.dumps(obj, allow_nan=False, ensure_ascii=False, **kwargs)
    except ValueError as err:
        key = _non_finite_key(obj)
        if key is None:
            raise
        raise NlpexpError(f"{where}: {key} is not a finite number; JSON cannot hold it") from err


def finite_or_null(obj: Any) -> Any:
    """`obj` with every NaN/Infinity float, at any depth, replaced by None (null)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {key: finite_or_null(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_or_null(value) for value in obj]
    return obj


def _non_finite_key(obj: Any, prefix: str = "") -> str | None:
    if isinstance(obj, float) and not math.isfinite(obj):
        return prefix or "the value"
    items = obj.items() if isinstance(obj, Mapping) else enumerate(obj) if isinstance(obj, list | tuple) else ()
    for key, value in items:
        found = _non_finite_key(value, f"{prefix}.{key}" if prefix else str(key))
        if found is not None:
            return found
    return None


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, strict_dumps(obj, path, indent=2, sort_keys=True) + "\n")


def write_jsonl_atomic(path: Path, rows: Iterable[Mapping]) -> int:
    """One JSON object per line (non-ASCII text kept readable), written atomically; returns the number of rows."""
    lines = [strict_dumps(dict(row), path) + "\n" for row in rows]
    write_text_atomic(path, "".join(lines))
    return len(lines)


@functools.cache
def sha256_file(path: str, mtime_ns: int, size: int) -> str:
    """Cached per (path, mtime, size): a sweep's trials hash each file once per process."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def data_hashes(paths) -> dict[str, str]:
    return {path: "hub dataset (fingerprint not recorded)" if path.startswith("hub:")
            else sha256_file(path, (stat := Path(path).stat()).st_mtime_ns, stat.st_size)
            for path in sorted({str(p) for p in paths})}


# The libraries provenance.json records the versions of.
PACKAGES = ("torch", "transformers", "sentence-transformers", "datasets", "accelerate", "hydra-core", "optuna",
            "nlpexp")


def collect_provenance(seed: int, data_files, started: str | None = None) -> dict:
    """provenance.json. `started`: when the run began (ISO, UTC); with it, `timing` holds it and now, the run's end
    (a sweep's trials.md shows each trial's run time and queue wait from them, nlpexp.sweep.summary)."""
    versions = {"python": platform.python_version(), **{package: _version(package) for package in PACKAGES}}
    facts = {"git": git_state(), "versions": versions, "seed": seed, "device": _device(), "host": platform.node(),
             "data_files": data_hashes(data_files)}
    if started:
        facts["timing"] = {"start": started, "end": datetime.now(UTC).isoformat(timespec="milliseconds")}
    return facts


def _version(package: str) -> str | None:
    with contextlib.suppress(metadata.PackageNotFoundError):
        return metadata.version(package)
    return None


def _device() -> dict:
    info = {"platform": platform.platform(), "cpu_count": os.cpu_count()}
    if (torch := sys.modules.get("torch")) is not None:  # a run that stopped at its config never imported it
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        # The processes that trained together (torchrun, accelerate launch), as the trainer's process group has it.
        group = torch.distributed.is_available() and torch.distributed.is_initialized()
        info["world_size"] = torch.distributed.get_world_size() if group else 1
    return info


def append_to_ledger(path: Path, record: dict) -> None:
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
            view = memoryview(line)
            while view:  # os.write may write part of it (a full disk): then the rest, or the OSError
                if (written := os.write(fd, view)) <= 0:
                    raise OSError(f"write returned {written}")
                view = view[written:]
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)  # no partial line left behind
            raise
    finally:
        os.close(fd)  # closing releases the lock


def read_ledger(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    records = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            start, record = _first_record(line)
            if line[:start].strip():
                log.warning("%s:%d: torn line (a write cut short)%s", path, number,
                            "; skipped" if record is None else "; read the record glued after it")
            if record is not None:
                records.append(record)
    return records


def _first_record(line: str) -> tuple[int, dict | None]:
    """The first '{' from which the rest of the line parses as an object, and the object: a record glued after a
    torn one is found too (a suffix starting inside the torn part cannot parse: it ends abruptly)."""
    for start in (i for i, char in enumerate(line) if char == "{"):
        with contextlib.suppress(json.JSONDecodeError):
            return start, json.loads(line[start:])  # from a '{': an object, or the error
    return len(line), None
