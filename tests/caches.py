"""What the test processes compute once and hand out again (registered by tests/conftest.py): results that depend
only on their input, kept per process, so that a cached answer is the answer the library would have computed.

Measured on the shared 2-core machine (2026-12-07, CPU seconds): a compose of the run config went 0.22 -> 0.13 s,
schema validation 0.035 -> 0.021 s; the suite composes a few thousand times in-process. Then (issue 30) copies by
unpickling instead of deepcopy, the presets stored once, the merge of a defaults list done once: 0.17 -> 0.06 s.
"""

from __future__ import annotations

import copy
import functools
import os
import pickle

import pytest


@pytest.fixture(scope="session", autouse=True)
def _config_files_parsed_once():
    """Hydra reads every file of the defaults tree anew at each compose (and nlpexp's presets plugin every preset):
    about 40 OmegaConf.load calls, a third of a compose, most of it building the nodes. The same text gives the same
    config, so each text is parsed once and a fresh copy handed out (Hydra merges and edits what it loads). The key
    is the text itself: a file rewritten by a test is parsed again. The copy is unpickled from the parse's pickle:
    7 times cheaper than copy.deepcopy of the nodes (0.006 s against 0.047 s for the 89 files of conf/ and
    experiments/), and the same config (OmegaConf's own __getstate__/__setstate__: only the flags cache is left to be
    rebuilt); a config that does not pickle is deep-copied as before."""
    from omegaconf import OmegaConf

    from tests.forkwarm import config_file_cache

    def copy_out(kept):
        return pickle.loads(kept) if isinstance(kept, bytes) else copy.deepcopy(kept)

    load = config_file_cache(OmegaConf.load, keep=_pickled, copy_out=copy_out)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(OmegaConf, "load", staticmethod(load))
        yield


def _pickled(cfg, node_for_node: bool = False):
    """cfg's pickle where unpickling it gives the same config (as written: nothing resolved; node_for_node: the
    same node types and metadata too), else cfg itself (None with node_for_node)."""
    from omegaconf import OmegaConf

    try:
        kept = pickle.dumps(cfg, protocol=pickle.HIGHEST_PROTOCOL)
        again = pickle.loads(kept)
        same = _same_nodes(again, cfg) if node_for_node else \
            type(again) is type(cfg) and OmegaConf.to_yaml(again) == OmegaConf.to_yaml(cfg)
    except Exception:  # noqa: BLE001 (whatever does not pickle is copied or merged as before)
        same = False
    return kept if same else (None if node_for_node else cfg)


@pytest.fixture(scope="session", autouse=True)
def _interpolations_parsed_once():
    """OmegaConf parses each `${...}` string with its ANTLR grammar whenever a node is created, merged, validated
    or resolved: the same few dozen strings thousands of times (a tenth of a compose, 40 % of nlpexp.schema's
    validation). The parse tree of a string depends on the string alone and visiting it changes nothing; a string
    that does not parse raises each time (lru_cache keeps no exception)."""
    from omegaconf import _utils, base, grammar_parser

    cached = functools.lru_cache(maxsize=8192)(grammar_parser.parse)
    with pytest.MonkeyPatch.context() as mp:
        for module in (grammar_parser, _utils, base):  # the two import the function itself
            mp.setattr(module, "parse", cached)
        yield


@pytest.fixture(scope="session", autouse=True)
def _presets_stored_once():
    """nlpexp's presets plugin (hydra_plugins.nlpexp_presets) forgets and stores every preset of experiments/ in
    Hydra's ConfigStore at each compose: a fifth of a compose. What it stores depends only on the search path's
    primary folders, the project root and the presets' files; where those are as at the last call, and the store
    holds what that call left (the same objects: ConfigStore.load hands out deep copies, nothing edits them), a
    call would store the same again, so it is skipped."""
    from hydra.core.config_store import ConfigStore

    from hydra_plugins import nlpexp_presets

    original = nlpexp_presets.PresetsSearchPath.manipulate_search_path
    last: dict = {}

    def manipulate_search_path(self, search_path) -> None:
        key = _presets_inputs(search_path)
        store = ConfigStore.instance()
        if key is not None and last.get("key") == key and _same(_stored(store.repo), last["stored"]):
            return
        original(self, search_path)
        last.update(key=key, stored=_stored(store.repo))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(nlpexp_presets.PresetsSearchPath, "manipulate_search_path", manipulate_search_path)
        yield


def _presets_inputs(search_path) -> tuple | None:
    """What the presets plugin reads (None: a file it could not read, left to the plugin)."""
    from hydra_plugins.nlpexp_presets import GROUP
    from nlpexp.paths import group_dir

    primary = tuple(sorted(os.path.realpath(e.path.split("://", 1)[-1]) for e in search_path.get_path()
                           if e.provider == "main"))
    folder = group_dir(GROUP)
    try:
        files = tuple((str(path), path.read_text(encoding="utf-8")) for path in sorted(folder.rglob("*.yaml")))
    except (OSError, UnicodeDecodeError):
        return None
    return primary, os.path.realpath(group_dir("")), str(folder), files


def _stored(repo: dict) -> list:
    """(path, entry) of every entry under the presets' group of Hydra's ConfigStore, subgroups included."""
    from hydra_plugins.nlpexp_presets import GROUP

    found, todo = [], [(GROUP, repo.get(GROUP))]
    while todo:
        path, group = todo.pop()
        if isinstance(group, dict):
            todo += [(f"{path}/{name}", entry) for name, entry in group.items()]
        elif group is not None:
            found.append((path, group))
    return found


def _same(now: list, before: list) -> bool:
    return len(now) == len(before) and all(a[0] == b[0] and a[1] is b[1] for a, b in zip(now, before, strict=True))


@pytest.fixture(scope="session", autouse=True)
def _defaults_merged_once():
    """Hydra merges the configs of the defaults list one by one into the composed config (OmegaConf re-parents the
    whole tree at each merge): half of a compose. The result depends only on the defaults list (each entry's path,
    package and primary mark, all that Hydra reads of it there) and the configs loaded for it (their nodes, flags
    and package headers): with those the same as at two earlier composes, its result is handed out again, a copy
    unpickled from it. The overrides are applied to it afterwards, as always. Likewise a loaded config placed under
    its package (what Hydra merges; nlpexp.gate reads the foreign ones again), from the config and the package."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    original_merge = ConfigLoaderImpl._compose_config_from_defaults_list
    original_embed = ConfigLoaderImpl._embed_result_config
    merged: dict = {}
    embedded: dict = {}

    def compose_config_from_defaults_list(self, defaults, repo):
        try:
            key = _digest([(default.config_path, default.package, default.primary, loaded.header, loaded.config)
                           for default in defaults
                           for loaded in [repo.load_config(config_path=default.config_path)]])
        except Exception:  # noqa: BLE001 (the original meets the same problem, and says so)
            return original_merge(self, defaults, repo)
        return _reused(merged, key, lambda: original_merge(self, defaults, repo))

    def embed_result_config(ret, package_override):
        package = ret.header["package"] if package_override is None else package_override
        if package is None or package == "":
            return original_embed(ret, package_override)  # ret itself
        try:
            key = _digest((package, ret.config))
        except Exception:  # noqa: BLE001
            return original_embed(ret, package_override)
        done = []

        def embed():
            done.append(original_embed(ret, package_override))
            return done[0].config

        config = _reused(embedded, key, embed)
        if done:
            return done[0]
        ret = copy.copy(ret)  # as the original does
        ret.config = config
        return ret

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ConfigLoaderImpl, "_compose_config_from_defaults_list", compose_config_from_defaults_list)
        mp.setattr(ConfigLoaderImpl, "_embed_result_config", staticmethod(embed_result_config))
        yield


def _digest(inputs) -> bytes:
    import hashlib

    return hashlib.sha256(pickle.dumps(inputs, protocol=pickle.HIGHEST_PROTOCOL)).digest()


def _reused(kept: dict, key: bytes, compute):
    """compute()'s config, or a copy of it unpickled: a key seen once is only noted (most are never seen again),
    at the second time the result is kept where its pickle gives it back node for node (else never kept)."""
    state = kept.get(key)
    if isinstance(state, bytes):
        return pickle.loads(state)
    cfg = compute()  # an error propagates: nothing kept
    if key not in kept:
        kept[key] = False
    elif state is False:
        kept[key] = _pickled_without_now(cfg)
    return cfg


def _pickled_without_now(cfg) -> bytes | None:
    """Hydra's merge resolves `${now:...}` (hydra.run.dir, hydra.sweep.dir; a resolver whose results OmegaConf keeps
    in the root's metadata): the copies are kept without them, so that each resolves the time when first read, as a
    compose at that moment would. Results of any other resolver kept there: never kept."""
    from collections import defaultdict

    metadata = cfg._get_root()._metadata
    if set(metadata.resolver_cache) - {"now"}:
        return None
    resolved, metadata.resolver_cache = metadata.resolver_cache, defaultdict(dict)
    try:
        return _pickled(cfg, node_for_node=True)
    finally:
        metadata.resolver_cache = resolved


def _same_nodes(a, b) -> bool:
    """The same node types, metadata (flags included) and values (as written) all the way down."""
    from omegaconf import DictConfig, ListConfig

    if type(a) is not type(b) or a._metadata != b._metadata:
        return False
    if isinstance(a, DictConfig | ListConfig):
        content = a._content, b._content
        if not isinstance(content[0], dict | list):
            return content[0] == content[1] and type(content[0]) is type(content[1])
        keys = (list(content[0]), list(content[1])) if isinstance(content[0], dict) else (range(len(content[0])),) * 2
        return len(content[0]) == len(content[1]) and list(keys[0]) == list(keys[1]) and \
            all(_same_nodes(content[0][k], content[1][k]) for k in keys[0])
    return type(a._value()) is type(b._value()) and a._value() == b._value()
