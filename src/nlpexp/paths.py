"""Where things are: the checkout (its conf/ and experiments/), the paths a run writes to, checked before the run
starts (without creating anything) and named in the error line when the file system fails later (a full disk),
and the Hugging Face Hub: asked once per process whether it is reachable (an offline lookup would retry for ~30 s)."""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path

from nlpexp import NlpexpError


def project_root() -> Path:
    """The checkout whose conf/ and experiments/ are read: NLPEXP_ROOT (run.py sets its own folder, so that a
    non-editable install runs that checkout's configs), else the checkout this package is installed from. Read
    when asked, never at import."""
    return Path(os.environ.get("NLPEXP_ROOT") or Path(__file__).resolve().parents[2])


def group_dir(group: str) -> Path:
    """The folder holding the options of a config group (the presets: experiments/, served by
    hydra_plugins/nlpexp_presets)."""
    return project_root() / "experiments" if group == "experiment" else project_root() / "conf" / group


def require_config_dir() -> None:
    """conf/ and experiments/ are read from the checkout, not packaged: a non-editable install cannot find them."""
    if not (project_root() / "conf" / "config.yaml").is_file():
        raise NlpexpError(f"no nlpexp config at {project_root() / 'conf'}: install the checkout editable "
                          "(pip install -e <checkout>) or set NLPEXP_ROOT=<checkout>")

# key under paths -> what must be there: a folder (made if absent) or a file (its folder made if absent)
WRITTEN = {"output_dir": "folder", "cache_dir": "folder", "ledger_file": "file"}


def check_paths(paths: dict, where: str = "paths") -> None:
    for key, kind in WRITTEN.items():
        if paths.get(key) is not None:
            problem = write_problem(Path(str(paths[key])).expanduser(), kind)
            if problem:
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
    if not filename:
        return None
    target = os.path.abspath(str(filename))
    matches = [(len(p), key) for key, p in paths.items()
               if p and (target == os.path.abspath(p) or target.startswith(os.path.abspath(p).rstrip("/") + "/"))]
    return max(matches)[1] if matches else None


def ledger_dir(output_dir: str | None, runs_dir: str, sweeps_dir: str) -> str:
    """Where a run's ledger line goes (conf/paths/default.yaml): the ledger of paths.runs_dir for a run dir under
    runs_dir or sweeps_dir (and for the tools, which have no run dir); beside the run dir for one the user pointed
    elsewhere (hydra.run.dir=/exp/a: /exp/ledger.jsonl), so that nothing of that run is written into the checkout."""
    if not output_dir:
        return runs_dir
    run_dir = os.path.abspath(os.path.expanduser(str(output_dir)))
    for known in (runs_dir, sweeps_dir):
        base = os.path.abspath(os.path.expanduser(str(known))).rstrip("/")
        if run_dir == base or run_dir.startswith(base + "/"):
            return runs_dir
    return os.path.dirname(run_dir)


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
