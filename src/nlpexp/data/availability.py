"""Can a split be read here? For optional roles (a test split the mirror holds out), which are skipped if not."""

from __future__ import annotations

import logging
from pathlib import Path

from nlpexp.data.readers import find_split_file
from nlpexp.hub import hub_reachable

log = logging.getLogger(__name__)


def unavailable(spec, role: str) -> bool:
    """Is `role` an optional role of the DataSpec none of whose files can be read here? Says so once per spec."""
    if role not in spec.optional_roles:
        return False
    if role not in spec.skipped_roles:
        missing = [m for entry in spec.splits[role]
                   if (m := missing_split(spec.root, *entry.split("/", 1), spec.sources[entry.split("/", 1)[0]]))]
        spec.skipped_roles[role] = "; ".join(missing)
        if missing:
            log.info("data '%s' has no %s split: its metrics are skipped (run.log says where it looked)", spec.name,
                     role)
            logging.getLogger("nlpexp.steps").info("data '%s': no %s split here (%s)", spec.name, role,
                                                   spec.skipped_roles[role])  # run.log only: paths are long
    return bool(spec.skipped_roles[role])


def missing_split(root: Path, folder: str, split: str, source) -> str | None:
    """Why `folder/split` cannot be read here (None when it can): not in the mirror and no reachable Hub copy."""
    directory = Path(root) / folder
    if find_split_file(directory, split) is not None or (source.hub_id and hub_reachable()):
        return None
    hub = f"Hub dataset '{source.hub_id}' unreachable" if source.hub_id else "no Hub copy configured"
    return f"{folder}/{split} is not in {directory}, {hub}"
