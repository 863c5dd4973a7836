"""Is the Hugging Face Hub reachable? Asked once per process, in about a second when it is not.

Without this probe an offline hub lookup retries for ~30 s before failing.
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path


@functools.cache
def hub_reachable(host: str = "huggingface.co", timeout: float = 2.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def hub_cached(repo_id: str) -> Path | None:
    """The local snapshot of a Hub model in the Hugging Face cache, if there is one (nothing is downloaded)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached (or an invalid id): either way, not usable offline
        return None
