"""Which config file set which key (through nlpexp.adapters.hydra, Hydra's own defaults list).

Hydra merges a defaults list of configs, each loaded from a search path entry (conf/, a `-cd` dir, a `-cp` dir, a
`hydra.searchpath` entry, Hydra's and its plugins' packages). `foreign_settings` walks that same list and yields
every key set by a file that is not the project's own (conf/ and experiments/ of this checkout) nor installed code
(pkg://, structured configs): those files may come from other people (docs/security.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from omegaconf import DictConfig, OmegaConf

from nlpexp.adapters import hydra as hydra_api
from nlpexp.adapters.omegaconf import child, is_interpolation, is_none, raw
from nlpexp.config import CONFIG_DIR, PRESETS_DIR

_INSTALLED = ("pkg", "structured")  # configs shipped inside installed packages: code, trusted as code is


class Setting(NamedTuple):
    file: str  # the file that set it
    key: str  # full dotted key
    value: Any  # as written: an interpolation stays the string `${...}`


def foreign_settings(hydra: Any, name: str, overrides: Sequence[str], multirun: bool) -> Iterator[Setting]:
    """Every leaf key a foreign file sets, in the order Hydra merges the files (`hydra`: adapters.hydra.main_hydra)."""
    if not any(_foreign_source(source) for source in hydra_api.sources(hydra, name, overrides)):
        return  # conf/, experiments/ and installed packages only (the usual command): nothing to walk
    for source, config_path, config in hydra_api.loaded_configs(hydra, name, overrides, multirun):
        file = _foreign_file(source, config_path)
        if file is not None:
            for key, value in _leaves(config, ""):
                yield Setting(file, key, value)


def _foreign_source(source: str) -> bool:
    scheme, _, folder = source.partition("://")
    return scheme not in _INSTALLED and not _own(os.path.realpath(folder), inside=False)


def _own(path: str, inside: bool = True) -> bool:
    """`path` is (inside) the project's conf/ or experiments/."""
    own = [os.path.realpath(d) for d in (CONFIG_DIR, PRESETS_DIR)]
    return any(path.startswith(d + os.sep) if inside else path == d for d in own)


def _foreign_file(source: str, config_path: str) -> str | None:
    """The file a config came from, or None where it is the project's own or installed code."""
    scheme, _, folder = source.partition("://")
    if scheme in _INSTALLED:
        return None
    inner = config_path.partition("/")[2] if scheme == "nlpexp-presets" else config_path  # its folder is the group
    file = os.path.realpath(os.path.join(folder, f"{inner}.yaml"))
    return None if _own(file) else file


def _leaves(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """(dotted key, value as written) of every leaf: a scalar, a list, an empty or null mapping, an interpolation."""
    if isinstance(node, DictConfig) and not is_none(node) and not is_interpolation(node) and len(node):
        for key in node.keys():
            yield from _leaves(child(node, key), f"{prefix}.{key}" if prefix else str(key))
    elif OmegaConf.is_config(node) and not is_interpolation(node) and not is_none(node):
        yield prefix, OmegaConf.to_container(node, resolve=False)
    else:
        yield prefix, raw(node)
