"""What to type instead of what Hydra refused: "did you mean" for misspelled options and keys, -m for a sweep.
nlpexp.config.hydra_error_line rewrites Hydra's composition errors with these (loaded only then)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from functools import cache

from omegaconf import OmegaConf

from nlpexp.paths import group_dir


def sweep_without_multirun(message: str) -> str | None:
    """Hydra's "Ambiguous value" / "requires --multirun" errors, as the override to type."""
    found = re.search(r"(?:Ambiguous value for argument|Sweep parameters) '([^']+)'", message)
    if not found:
        return None
    override = found.group(1)
    key, _, value = override.partition("=")
    if "(" in value:  # choice(...), range(...), interval(...)
        study = " with a study sweeper (hydra/sweeper=nlpexp)" if "interval(" in value else ""
        return f"{override} is a sweep: add -m to run it{study}: python run.py -m '{override}'"
    return (f"{override} is a sweep over {len(value.split(','))} values: add -m to run each "
            f"(python run.py -m {override}); for one list value write {key}='[{value}]'")


def suggest_option(message: str) -> str | None:
    """Hydra's "Could not find 'group/option'" with the nearest options of the group."""
    found = re.search(r"Could not (?:find|load) '([\w/]+)/([^'/]+)'", message)
    if not found:
        return None
    group, option = found.groups()
    options = sorted({p.stem for p in group_dir(group).glob("*.yaml")} | stored_options(group))
    if not options:
        return None
    close = difflib.get_close_matches(option, options, n=1, cutoff=0.6)
    if close:
        return f"{group}={option} is not an option; did you mean {group}={close[0]}?"
    return f"{group}={option} is not an option; options of {group}: {', '.join(options)}"


def stored_options(group: str) -> set[str]:
    """The options of `group` that installed code stored in Hydra's ConfigStore (a plugin's structured configs,
    e.g. hydra/sweeper/pruner's none, median...), beside those of conf/<group>/."""
    from hydra.core.config_store import ConfigStore

    try:
        return {name.removesuffix(".yaml") for name in ConfigStore.instance().list(group)}
    except OSError:  # no such group in the store
        return set()


def suggest_key(message: str) -> str | None:
    """Hydra's "Could not override 'a.b'" / "Key 'b' is not in struct" with the nearest setting's name."""
    found = re.search(r"Could not override '([^']+)'", message) or re.search(r"Could not append to config. An item "
                                                                            r"is already at '([^']+)'", message)
    if not found:
        return None
    key = found.group(1)
    if schema_knows(key):
        return (f"{key} is a setting this config does not list: add it with +{key}=<value> (python run.py --cfg job "
                f"-p {key.rpartition('.')[0]} shows the ones it lists)")
    close = nearest_keys(key)
    if close:
        return f"{key} is not a setting; did you mean {' or '.join(close)}?"
    parent = key.rpartition(".")[0]
    siblings = sorted(k.rpartition(".")[2] for k in known_keys() if k.rpartition(".")[0] == parent)
    if parent and siblings:
        return f"{key} is not a setting; {parent} has: {', '.join(siblings)}"
    return f"{key} is not a setting (a key of your own: +{key}=<value>)"


def schema_knows(key: str) -> bool:
    """Is `key` a setting of nlpexp.schema (for some class of its group) though absent from the composed config?"""
    from nlpexp import schema
    from nlpexp.rules import ByTarget, Group, MapOf

    node = schema.ROOT
    for part in key.split("."):
        if isinstance(node, MapOf) and isinstance(node.value, Group | ByTarget):
            node = node.value  # a mapping of groups (the loggers): `part` is a name of one's own
            continue
        groups = list(node.groups.values()) + [node.other] if isinstance(node, ByTarget) else [node]
        found = [g.fields[part] for g in groups if isinstance(g, Group) and part in g.fields]
        if not found:
            return False
        node = getattr(found[0], "rule", found[0])  # Maybe(Group) -> Group
    return True


def nearest_keys(key: str) -> list[str]:
    """The settings `key` most likely means: the same name in another group (trainer.lr -> optimizer.lr), else the
    closest spelling."""
    keys = known_keys()
    leaf = key.rpartition(".")[2]
    same_name = sorted(k for k in keys if k.rpartition(".")[2] == leaf and k != key)
    return same_name[:3] or difflib.get_close_matches(key, [k for k in keys if k != key], n=1, cutoff=0.8)


@cache
def known_keys() -> tuple[str, ...]:
    """Every setting's dotted name, read from the options of conf/'s groups (no composition: this runs while a
    composition failed)."""
    keys = set(_leaves(_load(group_dir("") / "config.yaml"), ""))
    keys |= {f"data.{k}" for k in _leaves(_load(group_dir("") / "data_defaults.yaml"), "")}
    for group in ("data", "model", "optimizer", "scheduler", "trainer", "task", "generation", "paths", "loss"):
        for path in group_dir(group).glob("*.yaml"):
            keys |= {f"{group}.{k}" for k in _leaves(_load(path), "")}
    return tuple(sorted(k for k in keys if k and "_target_" not in k and not k.startswith(("defaults", "hydra"))))


def _load(path) -> dict:
    if path.read_text().startswith("# @package _global_"):
        return {}
    return OmegaConf.to_container(OmegaConf.load(path)) or {}


def _leaves(node, prefix: str) -> Iterator[str]:
    if not isinstance(node, dict) or not node:
        yield prefix.rstrip(".")
        return
    for name, value in node.items():
        if name != "defaults":
            yield from _leaves(value, f"{prefix}{name}.")
