"""What a checkpoint was trained on: the settings that shape its weights, by content, not by name.

A checkpoint is resumed only by a run whose identity is the same (nlpexp.trainer.checkpoints.check_identity):
the task, the model as built (where it comes from, its tokenizer, random_init architecture, pooling,
max_seq_length, build), the loss and its settings, and the training rows (the sha256 of the training role's
files, and the settings that pick and label rows). Labels that only name things (model.name, data.name) are left
out: renaming a config is no other run, and a config of the same name with other settings is no longer the
same one. File hashes are cached per (path, mtime, size) in the process (nlpexp.io), which hashes the
same files for provenance.json anyway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MODEL_KEYS = ("name_or_path", "tokenizer", "random_init", "max_seq_length", "pooling", "build")
DATA_KEYS = ("max_train_samples", "columns", "label_names", "unknown_labels", "split_ratios", "shuffle")


def checkpoint_identity(task: str, model, data, loss=None) -> dict:
    """The identity of a run of `task` (a class name) on `model` (ModelSpec) and `data` (DataSpec) with `loss`
    (the loss factory, a functools.partial, or None)."""
    return {"task": task,
            "model": {key: _plain(getattr(model, key, None)) for key in MODEL_KEYS},
            "loss": _loss(loss),
            "data": {**{key: _plain(getattr(data, key, None)) for key in DATA_KEYS},
                     # the seed orders or cuts the rows only when they are shuffled or split by ratios
                     "seed": data.seed if data.shuffle or data.split_ratios else None,
                     "files": training_files(data)}}


def training_files(data) -> dict[str, str]:
    """{"<folder>/<split>": sha256} of the files the training rows come from (the pooled ones under
    split_ratios); a split read from the Hub is named by its dataset id. Keyed by entry, not by path: a data
    mirror moved elsewhere is the same data."""
    from nlpexp.data.readers import find_split_file
    from nlpexp.data.spec import POOLED
    from nlpexp.io import data_hashes

    role = POOLED if data.split_ratios else "train"
    found = {}
    for entry in data.splits.get(role) or []:
        folder, split = entry.split("/", 1)
        path = find_split_file(Path(data.root) / folder, split)
        source = data.sources.get(folder)
        found[entry] = data_hashes([path])[str(path)] if path is not None else \
            f"hub:{getattr(source, 'hub_id', None)}"
    return found


def _loss(loss) -> dict | None:
    if loss is None:
        return None
    func = getattr(loss, "func", loss)
    return {"class": f"{func.__module__}.{func.__qualname__}",
            **{key: _plain(value) for key, value in sorted(getattr(loss, "keywords", {}).items())}}


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


_ORDER = {"task": 0, "model": 1, "loss": 2, "data": 3}  # what differs is named in this order


def refuse_another_identity(folder, sealed: dict, identity: dict) -> None:
    """One error line naming (up to three of) the settings a checkpoint was trained with that this run changes."""
    from nlpexp import NlpexpError

    theirs, ours = _flat(sealed), _flat(identity)
    differ = sorted((k for k in ours.keys() | theirs.keys() if theirs.get(k) != ours.get(k)),
                    key=lambda k: (_ORDER.get(k.split(".")[0], len(_ORDER)), k))
    if differ:
        was = ", ".join(f"{k}={theirs.get(k)}" for k in differ[:3])
        now = ", ".join(f"{k}={ours.get(k)}" for k in differ[:3])
        more = f" (and {len(differ) - 3} more)" if len(differ) > 3 else ""
        raise NlpexpError(f"trainer.resume: {folder} was trained with {was}, this run has {now}{more}; resume "
                          f"with the same task, model and data settings, or drop trainer.resume")


def _flat(tree: dict, prefix: str = "") -> dict:
    """{"model": {"pooling": "mean"}} -> {"model.pooling": "mean"}: what differs is named key by key."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
