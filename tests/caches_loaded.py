"""Hydra's loading of one config of the defaults tree, done once per content (registered by tests/conftest.py, beside
tests/caches.py, whose helpers it uses).

Measured on the shared 2-core machine (2026-12-07, cProfile of tests/test_every_key_takes_effect.py): Hydra's
ConfigRepository.load_config, about 28 calls a compose (each config of the tree, once per compose), was 40 % of a
compose: reading the file or deep-copying the ConfigStore's node, then taking the `defaults` list out of the config
and parsing it into InputDefault objects, each time anew.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from tests.caches import _same_nodes


@pytest.fixture(scope="session", autouse=True)
def _configs_loaded_once():
    """ConfigRepository.load_config's result depends only on the source that has the config (found as Hydra finds
    it, each call), the config's path and what the source holds for it: a file's text (the header Hydra reads is its
    first lines), or the node Hydra's ConfigStore keeps (the same object: stored once, never edited, handed out as
    copies). With those the same as at two earlier calls, a copy of a result is unpickled: the config, its
    header and defaults list, fresh objects for Hydra to edit as it does. A result whose pickle does not give it back
    node for node, and any other kind of source (pkg://), is loaded as before."""
    from hydra._internal.config_repository import ConfigRepository
    from hydra.core.object_type import ObjectType

    original = ConfigRepository.load_config
    kept: dict = {}

    def load_config(self, config_path: str):
        source = self._find_object_source(config_path=config_path, object_type=ObjectType.CONFIG)
        try:
            key, held = _content(source, config_path)
        except Exception:  # noqa: BLE001 (the original meets the same problem, and says so)
            key = held = None
        if key is None:
            return original(self, config_path)
        state = kept.get(key)
        if state is not None and state[0] is held and isinstance(state[1], bytes):
            return pickle.loads(state[1])
        ret = _loaded(self, source, config_path)  # an error propagates: nothing kept
        if state is None or state[0] is not held:  # seen once: only noted (a tmp dir's file is seldom seen again)
            kept[key] = (held, False)
        elif state[1] is False:  # seen twice: kept where its pickle gives it back (else never)
            kept[key] = (held, _pickled_result(ret))
        return ret

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ConfigRepository, "load_config", load_config)
        yield


def _content(source, config_path: str) -> tuple:
    """(key, the object the key names by id, kept alive and compared by identity) for the config at config_path in
    `source`; (None, None) where the source is of another kind."""
    from hydra._internal.core_plugins.file_config_source import FileConfigSource
    from hydra._internal.core_plugins.structured_config_source import StructuredConfigSource
    from hydra.core.config_store import ConfigStore

    if type(source) is FileConfigSource:
        full_path = os.path.realpath(os.path.join(source.path, source._normalize_file_name(config_path)))
        text = Path(full_path).read_text(encoding="utf-8")
        return ("file", source.provider, source.path, config_path, full_path, text), None
    if type(source) is StructuredConfigSource:
        stored = ConfigStore.instance()._load(source._normalize_file_name(config_path))
        return ("structured", source.provider, source.path, config_path, id(stored)), stored
    return None, None


def _loaded(repo, source, config_path: str):
    """ConfigRepository.load_config's own steps, with the source it found."""
    ret = source.load_config(config_path=config_path)
    ret.is_schema_source = source.__class__.__name__ == "StructuredConfigSource" and source.provider == "schema"
    raw_defaults = repo._extract_defaults_list(config_path, ret.config)
    ret.defaults_list = repo._create_defaults_list(config_path, raw_defaults)
    return ret


def _pickled_result(ret) -> bytes | None:
    """ret's pickle where unpickling it gives the same result (its config node for node), else None."""
    try:
        kept = pickle.dumps(ret, protocol=pickle.HIGHEST_PROTOCOL)
        again = pickle.loads(kept)
        same = type(again) is type(ret) and _same_nodes(again.config, ret.config) and \
            (again.path, again.provider, again.header, again.defaults_list, again.is_schema_source) == \
            (ret.path, ret.provider, ret.header, ret.defaults_list, ret.is_schema_source)
    except Exception:  # noqa: BLE001 (whatever does not pickle is loaded as before)
        same = False
    return kept if same else None
