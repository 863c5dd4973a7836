"""Files other tools read are written atomically: a reader sees the old file or the new one, never half."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it; put back at once (at import, single-threaded)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


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


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def write_jsonl_atomic(path: Path, rows: Iterable[Mapping]) -> int:
    """One JSON object per line (non-ASCII text kept readable), written atomically; returns the number of rows."""
    lines = [json.dumps(dict(row), ensure_ascii=False) + "\n" for row in rows]
    write_text_atomic(path, "".join(lines))
    return len(lines)
