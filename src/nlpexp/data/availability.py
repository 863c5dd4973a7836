"""Can a split be read here? For optional roles (a test split the mirror holds out), which are skipped if not."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

from nlpexp.data.readers import find_split_file, local_splits
from nlpexp.errors import NlpexpError
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


def check_data_files(data: dict, path: str) -> None:
    """The files a data node names exist (or have a Hub copy), checked with the settings before anything heavy is
    imported: a wrong data root is one line in a second, naming the setting it came from."""
    from nlpexp.data.readers import SUFFIXES

    roles = ("train", "validation", "test")
    given = {role: data[role] for role in roles if data.get(role)}
    for role, file in given.items():
        file_path = Path(file).expanduser()
        if not file_path.name.endswith(SUFFIXES):
            raise NlpexpError(f"{path}.{role}={file}: not a file type nlpexp reads; use one of {', '.join(SUFFIXES)}")
        if not file_path.is_file():
            raise NlpexpError(f"{path}.{role}={file}: no such file ({file_path.resolve()})")
    optional = set(data.get("optional_roles") or ())
    entries = [entry for role, files in (data.get("splits") or {}).items()
               if role not in given and role not in optional for entry in files or ()]
    sources = data.get("sources") or {}
    missing = [entry for entry in entries if "/" in entry and entry.split("/", 1)[0] in sources
               and missing_split(Path(data["root"]).expanduser(), *entry.split("/", 1),
                                 SimpleNamespace(hub_id=(sources[entry.split("/", 1)[0]] or {}).get("hub_id")))]
    if not missing:
        return
    root = Path(data["root"]).expanduser()
    folders = sorted({entry.split("/", 1)[0] for entry in missing})
    present = "; ".join(f"{f}/ has: {', '.join(local_splits(root / f)) or 'no split files'}" for f in folders)
    where = f"data root {root} does not exist" if not root.is_dir() else \
        f"{', '.join(missing)} not found under {root} ({present})"
    hub = " and the Hub is unreachable" if any((s or {}).get("hub_id") for s in sources.values()) else ""
    raise NlpexpError(f"{where}{hub}: {_root_setting(data['root'], path)}")


def _root_setting(root: str, path: str) -> str:
    """Which setting gave a data node its root: the user's data.root, NLPEXP_DATA_DIR, or the default."""
    import os

    from nlpexp.config import PROJECT_ROOT

    env = os.environ.get("NLPEXP_DATA_DIR")
    if env and Path(env).expanduser().resolve() == Path(root).expanduser().resolve():
        return f"the root comes from NLPEXP_DATA_DIR={env}; point it (or {path}.root) at the dataset mirror"
    if Path(root).resolve() == (PROJECT_ROOT / ".." / "shared" / "data").resolve():
        return (f"the root is the default, ../shared/data beside the checkout; set NLPEXP_DATA_DIR or {path}.root "
                f"to the dataset mirror")
    return f"the root comes from {path}.root={root} (or paths.data_dir); point it at the dataset mirror"
