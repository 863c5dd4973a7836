"""Checkpoints that are whole or absent, and the resume that trusts only those.

The HF trainers write `checkpoint-N/` in place, file by file: a kill while saving leaves a folder that looks like a
checkpoint and is not. `SealedCheckpoints` (nlpexp.trainer.build, the last callback of every trainer) writes a seal
last, `nlpexp_checkpoint.json`, once every file of the checkpoint is on disk (fsynced): the files' names, sizes and
sha256, the step, the sum of the per-step training losses so far (a resumed run's `train/mean_loss` is the mean
over all its steps) and what the checkpoint was trained on (checkpoint_identity).

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
from typing import Any

from nlpexp import NlpexpError
from nlpexp.io import data_hashes, sha256_file, write_json_atomic
from nlpexp.redaction import redact

log = logging.getLogger(__name__)
SEAL = "nlpexp_checkpoint.json"
DAMAGED = "damaged-"  # prefix of a checkpoint set aside (the trainer's `checkpoint-*` globs never match it)
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
MODEL_KEYS = ("name_or_path", "tokenizer", "random_init", "max_seq_length", "pooling", "build")
DATA_KEYS = ("max_train_samples", "columns", "label_names", "unknown_labels", "split_ratios", "shuffle")


def seal(folder: Path, step: int, loss_sum: float, identity: dict | None, model_only: bool = False) -> None:
    """Mark `folder` complete: fsync what it holds, then write the seal listing it (atomically, last).
    `model_only`: saved without optimizer, scheduler and RNG state (trainer.save_only_model), so not resumable."""
    folder = Path(folder)
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != SEAL):
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        files[path.relative_to(folder).as_posix()] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    _fsync_dir(folder)
    # the identity names the model and data as configured: secrets interpolated into them stay out of the run dir
    write_json_atomic(folder / SEAL, {"step": step, "loss_sum": loss_sum, "identity": redact(identity),
                                      "model_only": model_only, "files": files})
    _fsync_dir(folder)


def read_seal(folder: Path) -> dict | None:
    """The seal of a complete checkpoint; None if `folder` is not one (no seal, or a file missing or cut).
    Sizes only: whether the content is what was sealed is `damage`'s question."""
    try:
        record = json.loads((Path(folder) / SEAL).read_text(encoding="utf-8"))
        for name, entry in record["files"].items():
            if Path(name).is_absolute() or ".." in Path(name).parts:  # a seal lists its own folder's files only
                return None
            size = entry["size"] if isinstance(entry, dict) else entry  # seals before sha256 held the size alone
            if (Path(folder) / name).stat().st_size != size:
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return record


def damage(folder: Path, record: dict) -> str | None:
    """None if the files of a complete checkpoint are those its seal lists, each with the sha256 it holds; else
    what differs, naming the file. Hashes are cached per (path, mtime, size): checked twice, read once."""
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


def _sha256(path: Path) -> str:
    info = path.stat()
    return sha256_file(str(path), info.st_mtime_ns, info.st_size)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def newest_complete(checkpoints_dir: Path) -> Path | None:
    """The newest complete and intact checkpoint of a run. Incomplete ones (killed while saving) are removed and
    damaged ones set aside first, so that neither this lookup nor the trainer's own rotation ever takes them."""
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
        elif found is None and (problem := damage(folder, record)) is not None:
            aside = folder.with_name(DAMAGED + folder.name)
            shutil.rmtree(aside, ignore_errors=True)
            folder.rename(aside)
            log.warning("%s is damaged: %s; set aside as %s, not resumed from", folder, problem, aside.name)
        elif found is None:
            found = folder
    return found


def check_identity(folder: Path, identity: dict | None) -> dict:
    """The seal of `folder`; refuses a folder that is not a complete checkpoint, or one trained on other things
    (one line naming up to three of the settings that differ)."""
    record = read_seal(folder)
    if record is None:
        raise NlpexpError(f"trainer.resume: {folder} is not a complete nlpexp checkpoint (no {SEAL}, or its "
                          f"files differ from it); give a checkpoint-N folder of an nlpexp run, or use "
                          f"trainer.resume=true")
    problem = damage(folder, record)
    if problem is not None:
        raise NlpexpError(f"trainer.resume: {folder} is damaged: {problem}; give an earlier checkpoint-N folder, "
                          f"or use trainer.resume=true (which skips damaged ones)")
    if record.get("model_only"):
        raise NlpexpError(f"trainer.resume: {folder} holds the model only (saved with trainer.save_only_model=true): "
                          f"no optimizer, scheduler or RNG state to resume from; drop trainer.resume to train anew")
    theirs, ours = _flat(record.get("identity") or {}), _flat(redact(identity or {}))  # seals hold it redacted
    order = {"task": 0, "model": 1, "loss": 2, "data": 3}  # what differs is named in this order
    differ = sorted((k for k in ours.keys() | theirs.keys() if theirs.get(k) != ours.get(k)),
                    key=lambda k: (order.get(k.split(".")[0], len(order)), k))
    if differ:
        was = ", ".join(f"{k}={theirs.get(k)}" for k in differ[:3])
        now = ", ".join(f"{k}={ours.get(k)}" for k in differ[:3])
        more = f" (and {len(differ) - 3} more)" if len(differ) > 3 else ""
        raise NlpexpError(f"trainer.resume: {folder} was trained with {was}, this run has {now}{more}; resume "
                          f"with the same task, model and data settings, or drop trainer.resume")
    return record


def _flat(tree: dict, prefix: str = "") -> dict:
    """{"model": {"pooling": "mean"}} -> {"model.pooling": "mean"}: what differs is named key by key."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def checkpoint_identity(task: str, model, data, loss=None) -> dict:
    """What a checkpoint of `task` (a class name) was trained on, by content, not by name: the model as built
    (ModelSpec), the loss and its settings (a functools.partial, or None), and the training rows (the sha256 of
    the training role's files, and the settings that pick and label rows of the DataSpec). Labels that only name
    things (model.name, data.name) are left out: renaming a config is no other run."""
    loss_func = getattr(loss, "func", loss)
    return {"task": task,
            "model": {key: _plain(getattr(model, key, None)) for key in MODEL_KEYS},
            "loss": None if loss is None else {
                "class": f"{loss_func.__module__}.{loss_func.__qualname__}",
                **{key: _plain(value) for key, value in sorted(getattr(loss, "keywords", {}).items())}},
            "data": {**{key: _plain(getattr(data, key, None)) for key in DATA_KEYS},
                     # the seed orders or cuts the rows only when they are shuffled or split by ratios
                     "seed": data.seed if data.shuffle or data.split_ratios else None,
                     "files": training_files(data)}}


def training_files(data) -> dict[str, str]:
    """{"<folder>/<split>": sha256} of the files the training rows come from (the pooled ones under split_ratios); a
    split read from the Hub is named by its dataset id. Keyed by entry, not path: a moved mirror is the same data."""
    from nlpexp.data import POOLED
    from nlpexp.data.readers import find_split_file

    found = {}
    for entry in data.splits.get(POOLED if data.split_ratios else "train") or []:
        folder, split = entry.split("/", 1)
        path = find_split_file(Path(data.root) / folder, split)
        hub_id = getattr(data.sources.get(folder), "hub_id", None)
        found[entry] = data_hashes([path])[str(path)] if path is not None else f"hub:{hub_id}"
    return found


def _plain(value: Any) -> Any:
    """A JSON value for the seal: containers as plain dicts/lists, any other object as its type (a repr could hold
    a memory address, which no rerun matches)."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return f"<{type(value).__module__}.{type(value).__qualname__}>"
