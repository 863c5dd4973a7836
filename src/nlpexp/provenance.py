"""What made a run: code (git commit + dirty flag), library versions, data file hashes, seed, device."""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from nlpexp.paths import project_root

PACKAGES = ("torch", "transformers", "sentence-transformers", "datasets", "accelerate", "hydra-core", "optuna",
            "nlpexp")


# git by absolute path from the system's default PATH, with no GIT_* / LD_* variables: neither the PATH a config
# could set (hydra.job.env_set, refused by nlpexp.config anyway) nor GIT_CONFIG_* can choose what runs here.
GIT = shutil.which("git", path=os.defpath) or "/usr/bin/git"


def _git_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "LD_", "DYLD_"))} | {"PATH": os.defpath}


def git_state(root: Path | None = None) -> dict:
    root = root or project_root()

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run([GIT, "-C", str(root), *args], capture_output=True, text=True, timeout=10,
                                  env=_git_env())
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def versions() -> dict[str, str | None]:
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def device_info() -> dict:
    info = {"platform": platform.platform(), "cpu_count": os.cpu_count()}
    if "torch" in sys.modules:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        # The processes that trained together (torchrun, accelerate launch), as the trainer's process group has it.
        group = torch.distributed.is_available() and torch.distributed.is_initialized()
        info["world_size"] = torch.distributed.get_world_size() if group else 1
    return info


@functools.cache
def sha256_file(path: str, mtime_ns: int, size: int) -> str:
    """Cached per (path, mtime, size): a sweep's trials hash each file once per process."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_hashes(paths) -> dict[str, str]:
    hashes = {}
    for path in sorted({str(p) for p in paths}):
        if path.startswith("hub:"):
            hashes[path] = "hub dataset (fingerprint not recorded)"
            continue
        stat = Path(path).stat()
        hashes[path] = sha256_file(path, stat.st_mtime_ns, stat.st_size)
    return hashes


def collect(seed: int, data_files, started: str | None = None) -> dict:
    """`started`: when the run began (ISO, UTC); with it, `timing` holds it and now, the run's end (a sweep's
    trials.md shows each trial's run time and queue wait from them, nlpexp.sweep.summary)."""
    from datetime import UTC, datetime

    facts = {"git": git_state(), "versions": versions(), "seed": seed, "device": device_info(),
             "host": platform.node(), "data_files": data_hashes(data_files)}
    if started:
        facts["timing"] = {"start": started, "end": datetime.now(UTC).isoformat(timespec="milliseconds")}
    return facts
