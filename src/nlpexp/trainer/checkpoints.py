"""Checkpoints that are whole or absent, and the resume that trusts only those.

The HF trainers write `checkpoint-N/` in place, file by file: a kill while saving leaves a folder that looks
like a checkpoint and is not. `SealedCheckpoints` (nlpexp.trainer.build, a callback of every trainer) writes a
seal last, `nlpexp_checkpoint.json`, after every file of the checkpoint is on disk (fsynced; files that on_save
callbacks add, such as the summarization predictions, included: the sealing callback runs last): the names, sizes and
sha256 of those files, the step, the sum of the per-step training losses so far (so that `train/mean_loss` of a
resumed run is the mean over all its steps, not over the resumed part only) and what the checkpoint was trained
on (Task.checkpoint_identity: the settings that shape the weights and the data files' sha256).

A folder whose seal is missing, or whose files are missing or of another size, is incomplete (a kill while
saving): removed. A complete one whose content differs from its seal is damaged (bit rot, an overwrite): it is
set aside as `damaged-checkpoint-N` with a warning naming the file, and resume takes the sealed one before it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

from nlpexp import NlpexpError
from nlpexp.io import sha256_file, write_json_atomic
from nlpexp.redaction import redact
from nlpexp.trainer.identity import refuse_another_identity

log = logging.getLogger(__name__)
SEAL = "nlpexp_checkpoint.json"
DAMAGED = "damaged-"  # prefix of a checkpoint set aside (the trainer's `checkpoint-*` globs never match it)
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")

def seal(folder: Path, step: int, loss_sum: float, identity: dict | None) -> None:
    """Mark `folder` complete: fsync what it holds, then write the seal listing it (atomically, last)."""
    folder = Path(folder)
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != SEAL):
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        files[path.relative_to(folder).as_posix()] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    _fsync_dir(folder)
    # the identity names the model and data as configured: secrets interpolated into them stay out of the run dir
    write_json_atomic(folder / SEAL, {"step": step, "loss_sum": loss_sum, "identity": redact(identity), "files": files})
    _fsync_dir(folder)


def read_seal(folder: Path) -> dict | None:
    """The seal of a complete checkpoint; None if `folder` is not one (no seal, or a file missing or cut).
    Sizes only: whether the content is what was sealed is `damage`'s question."""
    try:
        record = json.loads((Path(folder) / SEAL).read_text(encoding="utf-8"))
        for name, entry in record["files"].items():
            if Path(name).is_absolute() or ".." in Path(name).parts:  # a seal lists its own folder's files only
                return None
            if (Path(folder) / name).stat().st_size != _size(entry):
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return record


def damage(folder: Path, record: dict) -> str | None:
    """None if the files of a complete checkpoint are those its seal lists, each with the sha256 it holds; else
    what differs, naming the file. Hashes are cached per (path, mtime, size) in this process: checked twice, read
    once."""
    present = {p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if p.is_file() and p.name != SEAL}
    if extra := sorted(present - set(record["files"])):
        return f"{Path(folder) / extra[0]} is not in its seal (added after it was sealed)"
    for name, entry in record["files"].items():
        expected = entry.get("sha256") if isinstance(entry, dict) else None
        if expected is None:
            return f"its seal holds no sha256 of {name} (sealed by an older nlpexp): its content cannot be checked"
        if _sha256(Path(folder) / name) != expected:
            return f"{Path(folder) / name} differs from its seal (sha256)"
    return None


def _size(entry) -> int:
    return entry["size"] if isinstance(entry, dict) else entry  # (seals before sha256 held the size alone)


def _sha256(path: Path) -> str:
    info = path.stat()
    return sha256_file(str(path), info.st_mtime_ns, info.st_size)


def newest_complete(checkpoints_dir: Path) -> Path | None:
    """The newest complete and intact checkpoint of a run. Incomplete ones (killed while saving) are removed and
    damaged ones set aside first, so that neither this lookup nor the trainer's own rotation ever takes them for
    checkpoints."""
    checkpoints_dir = Path(checkpoints_dir)
    if not checkpoints_dir.is_dir():
        return None
    folders = sorted((f for f in checkpoints_dir.iterdir() if _CHECKPOINT.match(f.name) and f.is_dir()),
                     key=lambda f: int(f.name.split("-")[1]), reverse=True)
    found = None
    for folder in folders:
        record = read_seal(folder)
        if record is None:
            log.warning("%s is incomplete (the run stopped while saving it): removed", folder)
            shutil.rmtree(folder)
        elif found is None:
            found = _intact_or_set_aside(folder, record)
    return found


def _intact_or_set_aside(folder: Path, record: dict) -> Path | None:
    problem = damage(folder, record)
    if problem is None:
        return folder
    aside = folder.with_name(DAMAGED + folder.name)
    shutil.rmtree(aside, ignore_errors=True)
    folder.rename(aside)
    log.warning("%s is damaged: %s; set aside as %s, not resumed from", folder, problem, aside.name)
    return None


def check_identity(folder: Path, identity: dict | None) -> dict:
    """The seal of `folder`; refuses a folder that is not a complete checkpoint, or one trained on other things."""
    record = read_seal(folder)
    if record is None:
        raise NlpexpError(f"trainer.resume: {folder} is not a complete nlpexp checkpoint (no {SEAL}, or its "
                          f"files differ from it); give a checkpoint-N folder of an nlpexp run, or use "
                          f"trainer.resume=true")
    problem = damage(folder, record)
    if problem is not None:
        raise NlpexpError(f"trainer.resume: {folder} is damaged: {problem}; give an earlier checkpoint-N folder, "
                          f"or use trainer.resume=true (which skips damaged ones)")
    refuse_another_identity(folder, record.get("identity") or {}, redact(identity or {}))  # seals: redacted
    return record


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
