"""validate(cfg): the composed config against nlpexp.schema, before anything is built; the first problem is raised
as one NlpexpError line naming the key and what it allows."""

from __future__ import annotations

import difflib
from enum import Enum

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nlpexp import NlpexpError, omegaconf_error
from nlpexp.derived import group_of
from nlpexp.rules import ByTarget, Group, MapOf, Maybe
from nlpexp.schema import ROOT

_INTERNAL = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")


def validate(cfg: DictConfig) -> None:
    """Every setting of `cfg` (and of `cfg.hydra` where a sweep passes it) against the schema.

    Called by pipeline.run (each run, each trial) and by the study sweeper (once, before any trial).
    """
    # (The security gate, nlpexp.safety, has run before: on the command line, and first in pipeline._check.)
    _check_group(cfg, ROOT, "")


def _check_group(node: DictConfig, group: Group, path: str) -> None:
    plain: dict = {}
    order = list(group.fields)  # the schema's order: paths (which others interpolate) before the groups
    for key in sorted(node, key=lambda k: order.index(k) if k in order else len(order)):
        key_path = f"{path}.{key}" if path else str(key)
        if key not in group.fields:
            if not group.open and key not in _INTERNAL:
                raise NlpexpError(_unknown_key(key_path, str(key), group))
            continue
        plain[key] = _check_value(node, key, group.fields[key], key_path)
    absent = [k for k in group.required if k not in node]
    if absent:
        raise NlpexpError(f"{path}.{absent[0]} is missing; it is required (e.g. {path}.{absent[0]}=<value>)"
                          if path else f"{absent[0]} is missing from the config; it is required")
    for check in group.checks:
        check(plain, path)


def _check_value(node: DictConfig, key, rule, path: str):
    """The value of node[key] (resolved) after checking it against `rule`; nested groups are walked."""
    try:
        value = node[key]
    except OmegaConfBaseException as err:  # an unset ${oc.env:...}, a `???`
        raise NlpexpError(omegaconf_error(err, path)) from None
    if value is None and (isinstance(rule, Maybe) or getattr(rule, "nullable", False)):
        return None
    if isinstance(rule, Maybe) and _walked(rule.rule):
        rule = rule.rule
    if isinstance(rule, Group | ByTarget):
        if not isinstance(value, DictConfig):
            raise NlpexpError(f"{path} must be a config node (a mapping of settings), got {_shown(value)}")
        group = group_of(rule, value) if isinstance(rule, ByTarget) else rule
        _check_group(value, group, path)
        return None
    if _walked(rule) and isinstance(value, DictConfig):  # a mapping of groups (the loggers)
        for name in value:
            _check_value(value, name, rule.value, f"{path}.{name}")
        return None
    plain = _plain(value, path)
    if not rule.ok(plain):
        raise NlpexpError(f"{path} must be {rule}, got {_shown(plain)}")
    return plain


def _walked(rule) -> bool:
    """Is `rule` a node walked key by key (a group, or a mapping of groups) rather than checked as one value?"""
    return isinstance(rule, Group | ByTarget) or (isinstance(rule, MapOf) and isinstance(rule.value, Group | ByTarget))


def _plain(value, path: str):
    if isinstance(value, DictConfig | ListConfig):
        try:
            return OmegaConf.to_container(value, resolve=True, enum_to_str=True)
        except OmegaConfBaseException as err:
            raise NlpexpError(omegaconf_error(err, path)) from None
    return value.name if isinstance(value, Enum) else value


def _shown(value) -> str:
    return repr(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else \
        "null" if value is None else str(value)


def _unknown_key(path: str, key: str, group: Group) -> str:
    known = [k for k in group.fields if not k.startswith("_")]
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {path.rsplit('.', 1)[0]}.{close[0]}? " if close and "." in path else \
        f"did you mean {close[0]}? " if close else ""
    return f"{path} is not a setting; {hint}known: {', '.join(known)}"

