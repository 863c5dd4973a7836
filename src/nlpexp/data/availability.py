"""Can a split be read here? For optional roles (a test split the mirror holds out), which are skipped if not."""

from __future__ import annotations

from pathlib import Path

from nlpexp.data.readers import find_split_file
from nlpexp.hub import hub_reachable


def missing_split(root: Path, folder: str, split: str, source) -> str | None:
    """Why `folder/split` cannot be read here (None when it can): not in the mirror and no reachable Hub copy."""
    directory = Path(root) / folder
    if find_split_file(directory, split) is not None or (source.hub_id and hub_reachable()):
        return None
    hub = f"Hub dataset '{source.hub_id}' unreachable" if source.hub_id else "no Hub copy configured"
    return f"{folder}/{split} is not in {directory}, {hub}"
