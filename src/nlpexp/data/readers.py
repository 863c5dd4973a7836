"""Find and read the split files of the local mirror (or their Hub copy) into `datasets.Dataset`s, with one-line
errors for bad or missing files."""

from __future__ import annotations

import functools
import gzip
import json
import logging
import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from nlpexp import NlpexpError, first_line
from nlpexp.paths import hub_reachable, project_root
from nlpexp.rules import MapOf, Maybe, Text

log = logging.getLogger(__name__)

SUFFIXES = (".jsonl.gz", ".jsonl", ".csv", ".tsv", ".parquet")
# A JSON value's type as messages name it (exact types: a bool is no number here)
JSON_TYPES = {type(None): "null", bool: "boolean", int: "number", float: "number", str: "string", list: "list",
              dict: "object"}


_PART = r"[A-Za-z0-9](?:[A-Za-z0-9_-]|\.(?!\.))*"  # letters, digits, '-', '_', '.', no '..'; not '.' or '-' first
# 'owner/name' only: a bare name can be one of datasets' builders (`text`, `csv`, `json`, ...), which read the
# files of the current folder, and a path is read as a local folder; a config file is data (docs/security.md).
HUB_ID = Text(f"{_PART}/{_PART}", "a Hub dataset id 'owner/name' (letters, digits, '-', '_', '.'; each part "
                                  "starting with a letter or digit; no '..')")
HUB_CONFIG = Text(_PART, "a config name (letters, digits, '-', '_', '.'; starting with a letter or digit)")
SPLIT = Text(_PART, "a split name (letters, digits, '-', '_', '.'; starting with a letter or digit)")
# data.sources.<folder>: what a source may say, and nothing else (an unknown key is refused)
SOURCE = {"hub_id": Maybe(HUB_ID), "hub_config": Maybe(HUB_CONFIG),
          "hub_splits": Maybe(MapOf(SPLIT, key=Text(_PART, "a split name")))}


@dataclass(frozen=True)
class Source:
    """Where a folder of the mirror also lives on the Hub (data.sources.<folder>; its rules: SOURCE)."""
    hub_id: str | None = None
    hub_config: str | None = None
    hub_splits: tuple[tuple[str, str], ...] = ()  # (mirror split, hub split) pairs; hashable for the cache

    @classmethod
    def from_config(cls, node: Mapping | None) -> Source:
        node = dict(node or {})
        return cls(node.get("hub_id"), node.get("hub_config"), tuple(dict(node.get("hub_splits") or {}).items()))


def find_split_file(folder: Path, split: str) -> Path | None:
    return next((path for suffix in SUFFIXES if (path := folder / f"{split}{suffix}").is_file()), None)


def local_splits(folder: Path) -> list[str]:
    return sorted({p.name[: -len(s)] for s in SUFFIXES for p in folder.glob(f"*{s}")})


def read_split_file(path: Path):
    import datasets

    if path.name.endswith((".jsonl", ".jsonl.gz")):
        return datasets.Dataset.from_list(_uniform_rows(_read_jsonl(path), path))
    import pandas as pd

    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" \
            else pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", keep_default_na=False)
    except Exception as err:  # pandas raises many types for a malformed file
        raise NlpexpError(f"cannot read {path}: {first_line(err)}") from err
    return datasets.Dataset.from_pandas(frame, preserve_index=False)


def _read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line number, row) of every non-blank line; each must be a JSON object."""
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    line_no = 0
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):  # noqa: B007 (read in the except)
                if line.strip():
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise NlpexpError(f"{path} line {line_no} is a JSON {JSON_TYPES[type(row)]}, not an object; "
                                          f"each line must be one row like {{\"text\": ..., \"label\": ...}}")
                    rows.append((line_no, row))
    except json.JSONDecodeError as err:
        raise NlpexpError(f"{path} line {line_no} is not valid JSON ({err.msg}); fix or regenerate the file") from err
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as err:
        raise NlpexpError(f"{path} is corrupt or truncated ({first_line(err)}); restore it from the source") from err
    if not rows:
        raise NlpexpError(f"{path} holds no rows")
    return rows


def _uniform_rows(rows: list[tuple[int, dict]], path: Path) -> list[dict]:
    """The rows with every column any row has (absent: null), each column of one JSON type (int and float mix).

    datasets infers the columns from the first row and the types from the first values: a key missing there would
    vanish from every row, and a label that is a string in one row and a number in another would crash Arrow.
    """
    names: dict[str, None] = {}  # every column, in order of first appearance
    kinds: dict[str, tuple[str, int]] = {}  # column -> (its type, the line that set it)
    for line_no, row in rows:
        for key, value in row.items():
            names.setdefault(key)
            if value is None:
                continue
            kind = JSON_TYPES.get(type(value), "value")
            seen = kinds.setdefault(key, (kind, line_no))
            if seen[0] != kind:
                raise NlpexpError(f"{path} line {line_no}: column '{key}' holds a {kind} ({value!r:.40}) but a "
                                  f"{seen[0]} on line {seen[1]}; one type per column (quote the numbers, or fix "
                                  f"the row)")
    return [{name: row.get(name) for name in names} for _, row in rows]


def read_given_file(key: str, given: str):
    """(rows, origin) of a file given by path (data.train=<file>); `key` names the setting in errors."""
    path = _given_file(key, given)
    return _read_file(path, path.stat().st_mtime_ns, path.stat().st_size), str(path)


def _given_file(key: str, given: str) -> Path:
    path = Path(given).expanduser().resolve()
    if not path.name.endswith(SUFFIXES):
        raise NlpexpError(f"{key}={given}: not a file type nlpexp reads; use one of {', '.join(SUFFIXES)}")
    if not path.is_file():
        raise NlpexpError(f"{key}={given}: no such file ({path})")
    return path


@functools.cache
def _read_file(path: Path, mtime_ns: int, size: int):
    """A given file's rows, read once per version of the file (the roles' loads each ask for them)."""
    log.info("reading %s", path)
    return read_split_file(path)


@functools.cache
def read_split(root: Path, folder: str, split: str, source: Source):
    """(rows, origin) of `<folder>/<split>`: the local mirror's file, else the hub dataset of `source`."""
    directory = root / folder
    if (path := find_split_file(directory, split)) is not None:
        log.info("reading %s", path)
        return read_split_file(path), str(path)
    if why := missing_split(root, folder, split, source.hub_id):
        if not root.is_dir():
            raise NlpexpError(f"data root {root} does not exist; set NLPEXP_DATA_DIR to the dataset mirror")
        raise NlpexpError(f"split '{folder}/{split}' not found: {why}. Splits present in {directory}: "
                          f"{', '.join(local_splits(directory)) or 'none'}")
    if os.path.lexists(source.hub_id):  # datasets would read that local folder (the current folder's) instead
        raise NlpexpError(f"hub dataset '{source.hub_id}' is also a path in the current folder {Path.cwd()}, which "
                          f"datasets would read instead of the Hub: run from another folder")
    import datasets

    hub_split = dict(source.hub_splits).get(split, split)
    try:
        return datasets.load_dataset(source.hub_id, source.hub_config, split=hub_split), f"hub:{source.hub_id}/{split}"
    except Exception as err:  # the hub raises a zoo of types; the user needs the message
        raise NlpexpError(f"hub dataset '{source.hub_id}' split '{hub_split}': {first_line(err)}") from err


def missing_split(root: Path, folder: str, split: str, hub_id: str | None) -> str | None:
    """Why `folder/split` cannot be read here (None when it can): not in the mirror and no reachable Hub copy."""
    directory = Path(root) / folder
    if find_split_file(directory, split) is not None or (hub_id and hub_reachable()):
        return None
    hub = f"Hub dataset '{hub_id}' unreachable" if hub_id else "no Hub copy configured"
    return f"{folder}/{split} is not in {directory}, {hub}"


def check_data_files(data: dict, path: str) -> None:
    """A data node's sources name Hub datasets (SOURCE), and the files it names exist (or have a Hub copy), checked
    with the settings before anything heavy is imported: a wrong data root is one line in a second, naming the
    setting it came from."""
    _check_sources(data.get("sources") or {}, path)
    given = {role: _given_file(f"{path}.{role}", data[role]) for role in ("train", "validation", "test")
             if data.get(role)}
    optional = set(data.get("optional_roles") or ())
    sources = {folder: (source or {}).get("hub_id") for folder, source in (data.get("sources") or {}).items()}
    root = Path(data["root"]).expanduser()
    missing = [entry for role, files in (data.get("splits") or {}).items() if role not in given and role not in optional
               for entry in files or () if "/" in entry and entry.split("/", 1)[0] in sources
               and missing_split(root, *entry.split("/", 1), sources[entry.split("/", 1)[0]])]
    if not missing:
        return
    folders = sorted({entry.split("/", 1)[0] for entry in missing})
    present = "; ".join(f"{f}/ has: {', '.join(local_splits(root / f)) or 'no split files'}" for f in folders)
    where = f"data root {root} does not exist" if not root.is_dir() else \
        f"{', '.join(missing)} not found under {root} ({present})"
    hub = " and the Hub is unreachable" if any(sources.values()) else ""
    raise NlpexpError(f"{where}{hub}: {_root_setting(data['root'], path)}")


def _check_sources(sources: Mapping, path: str) -> None:
    """Each `<path>.sources.<folder>` against SOURCE, one line naming the key (data.sources.evil.hub_id). Here, not
    in DataSpec's annotation: the schema hands a node's checks no value of a mapping of groups it walked."""
    for folder, source in sources.items():
        for key, value in (source or {}).items():  # (the annotation's rule refused a source that is no mapping)
            where = f"{path}.sources.{folder}.{key}"
            if key not in SOURCE:
                raise NlpexpError(f"{where} is not a setting; known: {', '.join(SOURCE)}")
            if not SOURCE[key].ok(value):
                raise NlpexpError(f"{where} must be {SOURCE[key]}, got {value!r}")


def _root_setting(root: str, path: str) -> str:
    """Which setting gave a data node its root: the user's data.root, NLPEXP_DATA_DIR, or the default."""
    env = os.environ.get("NLPEXP_DATA_DIR")
    if env and Path(env).expanduser().resolve() == Path(root).expanduser().resolve():
        return f"the root comes from NLPEXP_DATA_DIR={env}; point it (or {path}.root) at the dataset mirror"
    if Path(root).resolve() == (project_root() / ".." / "shared" / "data").resolve():
        return (f"the root is the default, ../shared/data beside the checkout; set NLPEXP_DATA_DIR or {path}.root "
                f"to the dataset mirror")
    return f"the root comes from {path}.root={root} (or paths.data_dir); point it at the dataset mirror"
