"""Tokenised datasets cached on disk, so that reruns and the trials of a sweep tokenise each split once.

A cache file is named by a hash of everything that decides its rows: the input rows, the tokenizer's files,
the map function's source, its settings (max length, ...) and the library versions. Only the tasks that
tokenise whole splits with `datasets.map` use it (classification, summarisation); the sentence-transformers
tasks tokenise per batch in their collator and have nothing to cache.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path

from nlpexp import first_line
from nlpexp.adapters import fingerprint
from nlpexp.io import sha256_file

log = logging.getLogger(__name__)
# Libraries whose upgrade may change what a tokenizer produces or how the cache file is written.
LIBRARIES = ("datasets", "tokenizers", "transformers")
# Read by every tokenizer besides its vocabulary files (`vocab_files_names`).
TOKENIZER_CONFIGS = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")


def cached_map(rows, function: Callable, tokenizer, *, cache_dir: str | Path | None, label: str,
               settings: Mapping | None = None, remove_columns: Sequence[str] = ()):
    """`rows.map(function, batched=True)` with fn_kwargs tokenizer + `settings`; read back from `cache_dir`
    when the same map ran before, in this process or another. `cache_dir=None` maps without a cache."""
    map_kwargs = {"batched": True, "remove_columns": list(remove_columns),
                  "fn_kwargs": {"tokenizer": tokenizer, **(settings or {})}}
    if cache_dir is None:
        return rows.map(function, **map_kwargs)
    key = cache_key(rows, function, tokenizer, settings or {}, remove_columns)
    path = Path(cache_dir).expanduser() / f"{key}.arrow"
    path.parent.mkdir(parents=True, exist_ok=True)
    # datasets writes the file under a temporary name and renames it: parallel trials cannot read half a file.
    map_kwargs.update(cache_file_name=str(path), load_from_cache_file=True, new_fingerprint=key)
    if path.is_file():
        try:
            mapped = rows.map(function, **map_kwargs)
            if len(mapped) != len(rows):  # a cut Arrow stream still opens, with the rows before the cut
                raise ValueError(f"{len(mapped)} rows instead of {len(rows)}")
            log.info("tokenised %s: reused cache %s", label, path)
            return mapped
        except Exception as err:  # pyarrow and datasets raise many types for a damaged file
            # A damaged entry (a disk error, a copy cut short) would otherwise break every later run with this key.
            log.warning("tokenised %s: cache entry %s is unreadable (%s: %s); rebuilding it", label, path,
                        type(err).__name__, first_line(err))
            path.unlink(missing_ok=True)
    mapped = rows.map(function, **map_kwargs)
    log.info("tokenised %s and cached it in %s", label, path)
    return mapped


def cache_key(rows, function: Callable, tokenizer, settings: Mapping, remove_columns: Sequence[str] = ()) -> str:
    what = {
        "rows": fingerprint(rows),
        "function": f"{function.__module__}.{function.__qualname__}",
        "source": _sha256(inspect.getsource(function)),
        "settings": dict(settings),
        "remove_columns": list(remove_columns),
        "tokenizer": tokenizer_identity(tokenizer),
        "versions": {name: metadata.version(name) for name in LIBRARIES},
    }
    return _sha256(json.dumps(what, sort_keys=True, default=str))


def tokenizer_identity(tokenizer) -> dict:
    """The hashes of the files a tokenizer was read from, or for one not read from a folder (a hub id) its name and
    vocabulary. Not a hash of the tokenizer object: calling it with truncation changes its state, hence its hash."""
    folder = Path(tokenizer.name_or_path)
    names = sorted({*getattr(tokenizer, "vocab_files_names", {}).values(), *TOKENIZER_CONFIGS})
    identity = {"class": type(tokenizer).__name__, "size": len(tokenizer)}
    if folder.is_dir():
        files = [folder / name for name in names if (folder / name).is_file()]
        return {**identity, "files": {f.name: sha256_file(str(f), f.stat().st_mtime_ns, f.stat().st_size)
                                      for f in files}}
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
    return {**identity, "name": tokenizer.name_or_path, "vocab": _sha256(vocab)}


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
