"""A config node checked against its settings (a Group of nlpexp.rules): those the schema lists, or those read from
the signature of the class it builds, nlpexp's own (ModelSpec, TrainerSettings, ...) and a user's alike, so that a
user's own component is validated like nlpexp's with no edit of nlpexp (how a signature is read: docs/extending.md,
"Settings come from the signature"). A range lives in one place: the Rule in the parameter's `Annotated[...]`.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import inspect
import pydoc
import sys
import types
import typing
from enum import Enum
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nlpexp import NlpexpError, omegaconf_error
from nlpexp.components import BUILTIN_TARGETS, is_allowed
from nlpexp.rules import Anything, Bool, ByTarget, Group, Int, ListOf, MapOf, Maybe, Num, OneOf, Rule, Text

_INTERNAL = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")


def check_group(node: DictConfig, group: Group, path: str) -> None:
    """Every setting of `node` against `group`; the first problem is raised as one NlpexpError line naming the key
    and what it allows."""
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
        check_group(value, group_of(rule, value) if isinstance(rule, ByTarget) else rule, path)
        return None
    if _walked(rule) and isinstance(value, DictConfig):  # a mapping of groups (the loggers)
        for name in value:
            _check_value(value, name, rule.value, f"{path}.{name}")
        return None
    if isinstance(value, DictConfig | ListConfig):
        try:
            value = OmegaConf.to_container(value, resolve=True, enum_to_str=True)
        except OmegaConfBaseException as err:
            raise NlpexpError(omegaconf_error(err, path)) from None
    plain = value.name if isinstance(value, Enum) else value
    if not rule.ok(plain):
        raise NlpexpError(f"{path} must be {rule}, got {_shown(plain)}")
    return plain


def _walked(rule) -> bool:
    """Is `rule` a node walked key by key (a group, or a mapping of groups) rather than checked as one value?"""
    return isinstance(rule, Group | ByTarget) or (isinstance(rule, MapOf) and isinstance(rule.value, Group | ByTarget))


def _shown(value) -> str:
    return repr(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else \
        "null" if value is None else str(value)


def _unknown_key(path: str, key: str, group: Group) -> str:
    known = [k for k in group.fields if not k.startswith("_")]
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {path.rsplit('.', 1)[0]}.{close[0]}? " if close and "." in path else \
        f"did you mean {close[0]}? " if close else ""
    return f"{path} is not a setting; {hint}known: {', '.join(known)}"


_RULES = {int: Int(), float: Num(), bool: Bool(), str: Text(meaning="a string", empty=True)}
_NAMED = {t.__name__: rule for t, rule in _RULES.items()}


def group_of(rule: ByTarget, node: Any) -> Group:
    """The Group of `node` (a mapping with `_target_`): the schema's own where it describes the target (or the
    target is nlpexp's), else read from the target's signature."""
    target = node.get("_target_")
    if not isinstance(target, str) or target in rule.groups or target in BUILTIN_TARGETS or not is_allowed(target):
        return rule.group(target)  # nothing is imported that the allow-list does not vouch for (the gate refuses it)
    built = locate(target)
    if built is None or not callable(built):
        return rule.other  # what cannot be imported is reported when it is built, with Hydra's message
    return _derived(built, rule, partial=node.get("_partial_") is True)


def described(built: Any, checks: tuple = (), kind: ByTarget | None = None) -> Group:
    """The Group of one of nlpexp's own classes, from its signature (less what `kind` binds, its `kind.nodes` walked
    as the nodes they are), with `checks` between its keys."""
    return dataclasses.replace(_derived(built, kind or ByTarget({}), partial=False), checks=checks)


class Described(collections.abc.Mapping):
    """ByTarget.groups of nlpexp's own classes, {target: checks between its keys}: each Group is read as described()
    reads it (with `kind`) when first asked for, the class imported then, as the config naming it imports it."""

    def __init__(self, checks: dict[str, tuple], kind: ByTarget | None = None):
        self._checks, self._kind, self._groups = checks, kind, {}

    def __getitem__(self, target: str) -> Group:
        if target not in self._groups:  # a target not listed: KeyError before anything is imported
            self._groups[target] = described(checks=self._checks[target], built=locate(target), kind=self._kind)
        return self._groups[target]

    def __iter__(self):
        return iter(self._checks)

    def __len__(self) -> int:
        return len(self._checks)


def _derived(built: Any, rule: ByTarget, partial: bool) -> Group:
    """`built`'s settings: its signature's and, through **kwargs, its bases' (the MRO; object accepts none), a
    base's first (a task's monitor, then its own keys), then those every node of the kind has (rule.other)."""
    fields: dict[str, Any] = {}
    required: list[str] = []
    base, is_open = Group({}), True
    for init in [built] if not isinstance(built, type) else [c for c in built.__mro__ if "__init__" in vars(c)]:
        if (found := _described(rule, init)) is not None:
            base, is_open = found, found.open
            break
        own, own_required, is_open = _parameters(init, rule, fields) if init is not object else ({}, [], False)
        fields, required = {**own, **fields}, [*own_required, *required]
        if not is_open:
            break
    common = rule.other
    fields = {key: value for key, value in fields.items() if key not in base.fields}  # a described base's rules hold
    return Group({**base.fields, **fields, **common.fields},
                 required=tuple(dict.fromkeys((*common.required, *base.required, *([] if partial else required)))),
                 open=is_open, checks=(*common.checks, *base.checks))


def _parameters(init: Any, kind: ByTarget, seen: dict) -> tuple[dict, list, bool]:
    """The settings of one signature that a subclass did not declare (`seen`), the required ones among them, and
    whether it takes **kwargs on (the chain goes on to the next base)."""
    function = init.__init__ if isinstance(init, type) else init
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: nothing known, nothing refused
        return {}, [], True
    hints = _hints(function)
    fields, required = {}, []
    for index, parameter in enumerate(parameters):
        if (index == 0 and isinstance(init, type)) or parameter.name in kind.bound or parameter.name in seen or \
                parameter.kind in (parameter.POSITIONAL_ONLY, parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        annotation = hints.get(parameter.name, parameter.annotation)
        rule = _node(annotation, kind.nodes) or _rule_of(annotation)
        nullable = parameter.default is None and not isinstance(rule, Maybe | Anything)
        fields[parameter.name] = Maybe(rule) if nullable else rule
        if parameter.default is parameter.empty:
            required.append(parameter.name)
    return fields, required, any(p.kind is p.VAR_KEYWORD for p in parameters)


def _node(annotation: Any, nodes: collections.abc.Mapping) -> Group | ByTarget | None:
    """The rule of a parameter that is a config node of its own (ByTarget.nodes): its class's, or a base's."""
    names = [f"{c.__module__}.{c.__qualname__}" for c in annotation.__mro__] if isinstance(annotation, type) else []
    return next((nodes[name] for name in names if name in nodes), None)


def _rule_of(annotation: Any) -> Rule:
    if isinstance(annotation, str):  # not resolvable (a name imported for type checking only): read as written
        text = annotation.replace(" ", "")
        inner = _NAMED.get(text.removesuffix("|None").removeprefix("None|"))
        return Anything() if inner is None else inner if text in _NAMED else Maybe(inner)
    if annotation in _RULES:
        return _RULES[annotation]
    origin, args = typing.get_origin(annotation) or annotation, typing.get_args(annotation)
    if origin is typing.Annotated:
        return next((m for m in annotation.__metadata__ if isinstance(m, Rule)), None) or _rule_of(args[0])
    if origin is typing.Literal:
        return OneOf(tuple(args))
    if origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping):
        value = _rule_of(args[1]) if len(args) == 2 else Anything()
        return MapOf(None if isinstance(value, Anything) else value)
    if origin in (list, tuple, collections.abc.Sequence) and len(args) < 2:
        return ListOf(_rule_of(args[0]) if args else Anything())
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        inner = _rule_of(rest[0]) if len(rest) == 1 else Anything()
        return inner if isinstance(inner, Anything | Maybe) else Maybe(inner)
    return Anything()


def _hints(function: Any) -> dict:
    """The annotations resolved (Annotated kept), each on its own: one that names a type imported for type checking
    only leaves the others resolved. The code is installed code's own, which the allow-list vouched for."""
    try:
        return typing.get_type_hints(function, include_extras=True)
    except Exception:  # a name that does not resolve: resolve the others one by one
        pass
    hints = {}
    scope = getattr(function, "__globals__", {})
    for name, annotation in getattr(function, "__annotations__", {}).items():
        try:
            hints[name] = eval(annotation, dict(scope)) if isinstance(annotation, str) else annotation
        except Exception:  # left as written, read as written by _rule_of
            hints[name] = annotation
    return hints


def _described(rule: ByTarget, init: Any) -> Group | None:
    """The schema's Group of `init` when it is a class the schema describes; looked up in the modules already
    imported (a subclass imported its bases), so that nothing new is imported."""
    for target in rule.groups:
        module, _, name = target.rpartition(".")
        if module in sys.modules and getattr(sys.modules[module], name, None) is init:
            return rule.groups[target]
    return None


def locate(target: str) -> Any:
    """The object `target` names (module path, then attributes), None if it cannot be imported."""
    try:
        return pydoc.locate(target)
    except Exception:  # whatever it raises, instantiate reports it when it builds the node
        return None
