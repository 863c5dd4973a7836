"""Read one split file of the local mirror into a `datasets.Dataset`, with one-line errors for bad files."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

from nlpexp.errors import NlpexpError

SUFFIXES = (".jsonl.gz", ".jsonl", ".csv", ".tsv", ".parquet")


def find_split_file(folder: Path, split: str) -> Path | None:
    for suffix in SUFFIXES:
        path = folder / f"{split}{suffix}"
        if path.is_file():
            return path
    return None


def local_splits(folder: Path) -> list[str]:
    names = {p.name[: -len(s)] for s in SUFFIXES for p in folder.glob(f"*{s}")} if folder.is_dir() else set()
    return sorted(names)


def read_split_file(path: Path):
    import datasets

    if path.name.endswith((".jsonl", ".jsonl.gz")):
        return datasets.Dataset.from_list(_read_jsonl(path))
    import pandas as pd

    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", keep_default_na=False)
    except Exception as err:  # pandas raises many types for a malformed file
        raise NlpexpError(f"cannot read {path}: {_one_line(err)}") from err
    return datasets.Dataset.from_pandas(frame, preserve_index=False)


def _read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    line_no = 0
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):  # noqa: B007 (read in the except)
                if line.strip():
                    rows.append(json.loads(line))
    except json.JSONDecodeError as err:
        raise NlpexpError(f"{path} line {line_no} is not valid JSON ({err.msg}); fix or regenerate the file") from err
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as err:
        raise NlpexpError(f"{path} is corrupt or truncated ({_one_line(err)}); restore it from the source") from err
    if not rows:
        raise NlpexpError(f"{path} holds no rows")
    return rows


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
