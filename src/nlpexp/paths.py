"""Where things are: the checkout (its conf/ and experiments/, its git state); the paths a run writes to, checked
before the run starts (without creating anything) and named in the error line when the file system fails later (a
full disk); the Hugging Face Hub, asked once per process whether it is reachable (else a lookup retries ~30 s)."""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
from pathlib import Path

from nlpexp import NlpexpError


def project_root() -> Path:
    """The checkout whose conf/ and experiments/ are read: NLPEXP_ROOT (run.py sets its own folder, so that a
    non-editable install runs that checkout's configs), else the checkout this package is installed from. Read
    when asked, never at import."""
    return Path(os.environ.get("NLPEXP_ROOT") or Path(__file__).resolve().parents[2])


def group_dir(group: str) -> Path:
    """A config group's folder (the presets': experiments/, served by hydra_plugins/nlpexp_presets)."""
    return project_root() / "experiments" if group == "experiment" else project_root() / "conf" / group


def require_config_dir() -> None:
    """conf/ and experiments/ are read from the checkout, not packaged: a non-editable install cannot find them."""
    if not (project_root() / "conf" / "config.yaml").is_file():
        raise NlpexpError(f"no nlpexp config at {project_root() / 'conf'}: install the checkout editable "
                          "(pip install -e <checkout>) or set NLPEXP_ROOT=<checkout>")


# git by absolute path from the system's default PATH, with no GIT_* / LD_* variables: neither the PATH a config
# could set (hydra.job.env_set, refused by nlpexp.config anyway) nor GIT_CONFIG_* can choose what runs here.
GIT = shutil.which("git", path=os.defpath) or "/usr/bin/git"


# git reads hooks and commands from its config files (core.fsmonitor runs one at `git status`), found through the
# environment (HOME, XDG_CONFIG_HOME, GIT_*), which a job's env_set may have changed: only the checkout's own config.
_GIT_ENV = {"PATH": os.defpath, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "LC_ALL": "C"}


def git_state() -> dict:
    root = str(project_root())

    def git(*args: str) -> str | None:
        try:  # safe.directory: the checkout is trusted (a container's mount may have another owner)
            done = subprocess.run([GIT, "-c", f"safe.directory={root}", "-c", "core.fsmonitor=false", "-C", root,
                                   *args], capture_output=True, text=True, timeout=10, env=_GIT_ENV)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


# key under paths -> what must be there: a folder (made if absent) or a file (its folder made if absent)
WRITTEN = {"output_dir": "folder", "cache_dir": "folder", "ledger_file": "file"}


def check_paths(paths: dict, where: str = "paths") -> None:
    for key, kind in WRITTEN.items():
        if paths.get(key) is not None and (problem := write_problem(Path(str(paths[key])).expanduser(), kind)):
            raise NlpexpError(f"{where}.{key}: cannot use {paths[key]}: {problem}")


def write_problem(path: Path, kind: str) -> str | None:
    """Why `path` cannot be written as a `kind` ("folder" or "file"), or None."""
    if path.exists():
        if kind == "folder" and not path.is_dir():
            return "is a file, not a folder; name a folder"
        if kind == "file" and path.is_dir():
            return "is a folder; name a file inside it"
        return None if os.access(path, os.W_OK) else "is not writable (permission denied)"
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot be created: {parent} is a file"
    return None if os.access(parent, os.W_OK | os.X_OK) else f"cannot be created: {parent} is not writable"


def key_of(filename: str | None, paths: dict[str, str]) -> str | None:
    """The config key whose path holds `filename` (the longest match), e.g. for the OSError of a full disk."""
    matches = [(len(path), key) for key, path in paths.items() if filename and path and _inside(filename, path)]
    return max(matches)[1] if matches else None


def ledger_dir(output_dir: str | None, runs_dir: str, sweeps_dir: str) -> str:
    """Where a run's ledger line goes (conf/paths/default.yaml): the ledger of paths.runs_dir for a run dir under
    runs_dir or sweeps_dir (and for the tools, which have no run dir); beside the run dir for one the user pointed
    elsewhere (hydra.run.dir=/exp/a: /exp/ledger.jsonl), so that nothing of that run is written into the checkout."""
    if not output_dir or _inside(output_dir, runs_dir) or _inside(output_dir, sweeps_dir):
        return runs_dir
    return os.path.dirname(os.path.abspath(os.path.expanduser(str(output_dir))))


def _inside(path: str, folder: str) -> bool:
    path, folder = (os.path.abspath(os.path.expanduser(str(p))).rstrip("/") for p in (path, folder))
    return path == folder or path.startswith(folder + "/")


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
