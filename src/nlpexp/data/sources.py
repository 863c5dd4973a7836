"""Where a split's rows come from: the local mirror's file, else the Hub dataset its folder names."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from nlpexp.data.readers import SUFFIXES, find_split_file, local_splits, read_split_file
from nlpexp.errors import NlpexpError
from nlpexp.hub import hub_reachable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    hub_id: str | None = None
    hub_config: str | None = None
    hub_splits: tuple[tuple[str, str], ...] = ()  # (mirror split, hub split) pairs; hashable for the cache

    @classmethod
    def from_config(cls, node: Mapping | None) -> Source:
        node = dict(node or {})
        return cls(node.get("hub_id"), node.get("hub_config"), tuple(dict(node.get("hub_splits") or {}).items()))


def missing_split(root: Path, folder: str, split: str, source: Source) -> str | None:
    """Why `folder/split` cannot be read here (None when it can): not in the mirror and no reachable Hub copy."""
    directory = Path(root) / folder
    if find_split_file(directory, split) is not None or (source.hub_id and hub_reachable()):
        return None
    hub = f"Hub dataset '{source.hub_id}' unreachable" if source.hub_id else "no Hub copy configured"
    return f"{folder}/{split} is not in {directory}, {hub}"


@functools.cache
def read_split(root: Path, folder: str, split: str, source: Source):
    directory = root / folder
    path = find_split_file(directory, split)
    if path is not None:
        log.info("reading %s", path)
        return read_split_file(path), str(path)
    if source.hub_id and hub_reachable():
        return _read_hub(source, split), f"hub:{source.hub_id}/{split}"
    hub = f"hub dataset '{source.hub_id}'" + ("" if hub_reachable() else " (hub unreachable: offline)")
    where = f"{directory}/{split}{{{','.join(SUFFIXES)}}}"
    if not root.is_dir():
        raise NlpexpError(f"data root {root} does not exist; set NLPEXP_DATA_DIR to the dataset mirror")
    elsewhere = f" nor the {hub}" if source.hub_id else " (no hub fallback configured)"
    present = local_splits(directory)
    raise NlpexpError(
        f"split '{folder}/{split}' not found: neither {where}{elsewhere}. "
        f"Splits present in {directory}: {', '.join(present) or 'none'}"
    )


def _read_hub(source: Source, split: str):
    import datasets

    hub_split = dict(source.hub_splits).get(split, split)
    try:
        return datasets.load_dataset(source.hub_id, source.hub_config, split=hub_split)
    except Exception as err:  # the hub raises a zoo of types; the user needs the message
        raise NlpexpError(f"hub dataset '{source.hub_id}' split '{hub_split}': {str(err).splitlines()[0]}") from err
