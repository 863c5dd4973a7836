"""Copies and look-ups that never follow a symlink (the model registry's, docs/security.md): a version is meant to
be shared, and a `best_model -> ~/.ssh` would copy what the link points at into it. Each file is opened with
O_NOFOLLOW, so that a link swapped in after the check is refused too.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from nlpexp import NlpexpError


def refuse_links(path: Path, what: str, below: Path | None = None) -> None:
    """Refuse `path` if it, any folder between `below` and it, or anything inside it is a symlink or not a regular
    file or folder (one NlpexpError naming the first such path)."""
    path = Path(path)
    if below is not None:
        refuse_links_on_the_way(path, what, below)
    _check(path, what)
    if path.is_dir():
        for folder, dirs, files in os.walk(path):  # (os.walk does not descend into a symlinked folder)
            for name in [*dirs, *files]:
                _check(Path(folder) / name, what)


def refuse_links_on_the_way(path: Path, what: str, below: Path) -> None:
    """Refuse a symlink among the folders from `below` (not included) down to `path`, as far as they exist."""
    parts = Path(path).relative_to(below).parts
    for depth in range(len(parts)):
        part = Path(below).joinpath(*parts[:depth + 1])
        if not os.path.lexists(part):
            return
        _check(part, what)


def _check(path: Path, what: str) -> None:
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        raise NlpexpError(f"{what}: {path} is a symlink (to {os.readlink(path)}); only regular files and folders "
                          f"are read or written there: copy what it points at into place, or remove it")
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise NlpexpError(f"{what}: {path} is not a regular file or folder")


def copy_tree(source: Path, target: Path, what: str) -> None:
    """Copy the folder `source` to `target` (which must not exist), refusing any symlink in it."""
    source, target = Path(source), Path(target)
    refuse_links(source, what)
    target.mkdir()
    for folder, dirs, files in os.walk(source):
        relative = Path(folder).relative_to(source)
        for name in dirs:
            (target / relative / name).mkdir()
        for name in files:
            copy_file(Path(folder) / name, target / relative / name, what)
    shutil.copystat(source, target)


def copy_file(source: Path, target: Path, what: str) -> None:
    """Copy one regular file, refusing a symlink (checked and opened without following it)."""
    _check(Path(source), what)
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as err:
        raise NlpexpError(f"{what}: cannot read {source} without following a link: {err.strerror}") from err
    with os.fdopen(fd, "rb") as src, open(target, "xb") as dst:
        if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
            raise NlpexpError(f"{what}: {source} is not a regular file")
        shutil.copyfileobj(src, dst, 1 << 20)
    shutil.copystat(source, target, follow_symlinks=False)
