"""The settings of a component read from its own signature: nlpexp's (ModelSpec, DataSpec, TrainerSettings,
GenerationSettings: nlpexp.schema derives their groups here) and a user's own loss, model, dataset or task, which
so needs no edit of nlpexp to be validated like nlpexp's.

A class's settings are the parameters of its `__init__` and, where that passes `**kwargs` on, of its bases' (the
MRO), up to a base the schema describes (a ModelSpec subclass keeps every rule of `model`) or one without `**kwargs`
(closed: an unknown key is refused with a did-you-mean). The parameters the code passes when it builds the node
(ByTarget.bound: a task's model and data, a loss's model) are not settings; those without a default are required,
except in a `_partial_` node, which the code completes. The rule of a parameter is its annotation's: a Rule in
`Annotated[int, Int(1)]` (the one place a range lives), else int/float/bool/str, `X | None`, Literal[...], a Mapping
or Sequence of those; anything else accepts anything. ByTarget.other's keys (such as a task's monitor) keep theirs.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import pydoc
import sys
import types
import typing
from typing import Any

from nlpexp.components import BUILTIN_TARGETS, is_allowed
from nlpexp.rules import Anything, Bool, ByTarget, Group, Int, ListOf, MapOf, Maybe, Num, OneOf, Rule, Text

_RULES = {int: Int(), float: Num(), bool: Bool(), str: Text(meaning="a string", empty=True)}
_NAMED = {t.__name__: rule for t, rule in _RULES.items()}
_MAPS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_LISTS = (list, tuple, collections.abc.Sequence)


def group_of(rule: ByTarget, node: Any) -> Group:
    """The Group of `node` (a mapping with `_target_`): the schema's own where it describes the target (or the
    target is nlpexp's), else derived from the target's signature."""
    target = node.get("_target_")
    if not isinstance(target, str) or target in rule.groups or target in BUILTIN_TARGETS or not is_allowed(target):
        return rule.group(target)  # nothing is imported that the allow-list does not vouch for (the gate refuses it)
    built = _locate(target)
    if built is None or not callable(built):
        return rule.other  # what cannot be imported is reported when it is built, with Hydra's message
    return _derived(built, rule, partial=node.get("_partial_") is True)


def described(built: Any, checks: tuple = ()) -> Group:
    """The Group of one of nlpexp's own classes, from its signature, with `checks` between its keys."""
    return dataclasses.replace(_derived(built, ByTarget({}), partial=False), checks=checks)


class Described(collections.abc.Mapping):
    """ByTarget.groups of nlpexp's own classes, {target: checks between its keys}: each Group is read from the
    target's signature when first asked for, the class imported then, as the config naming it imports it."""

    def __init__(self, checks: dict[str, tuple]):
        self._checks, self._groups = checks, {}

    def __getitem__(self, target: str) -> Group:
        if target not in self._groups:
            self._groups[target] = described(_locate(target), self._checks[target])
        return self._groups[target]

    def __iter__(self):
        return iter(self._checks)

    def __len__(self) -> int:
        return len(self._checks)


def _derived(built: Any, rule: ByTarget, partial: bool) -> Group:
    fields: dict[str, Any] = {}
    required: list[str] = []
    base, is_open = Group({}), True
    for init in _inits(built):
        if (found := _described(rule, init)) is not None:
            base, is_open = found, found.open
            break
        if _add_parameters(init, rule.bound, fields, required):
            is_open = False
            break
    common = rule.other
    return Group({**fields, **base.fields, **common.fields},
                 required=tuple(dict.fromkeys((*common.required, *base.required, *([] if partial else required)))),
                 open=is_open, checks=(*common.checks, *base.checks))


def _inits(built: Any):
    """What builds the object: a function itself; for a class, the classes of its MRO that define __init__ (object
    accepts no settings: the end of the chain)."""
    if not isinstance(built, type):
        yield built
        return
    yield from (cls for cls in built.__mro__ if cls is object or "__init__" in vars(cls))


def _add_parameters(init: Any, bound: tuple[str, ...], fields: dict, required: list) -> bool:
    """Add the settings of one signature; True when it takes no **kwargs (the chain ends here)."""
    if init is object:
        return True
    function = init.__init__ if isinstance(init, type) else init
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: nothing known, nothing refused
        return False
    hints = _hints(function)
    for index, parameter in enumerate(parameters):
        if (index == 0 and isinstance(init, type)) or parameter.name in bound or parameter.name in fields or \
                parameter.kind in (parameter.POSITIONAL_ONLY, parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        rule = _rule_of(hints.get(parameter.name, parameter.annotation))
        nullable = parameter.default is None and not isinstance(rule, Maybe | Anything)
        fields[parameter.name] = Maybe(rule) if nullable else rule
        if parameter.default is parameter.empty:
            required.append(parameter.name)
    return not any(p.kind is p.VAR_KEYWORD for p in parameters)


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
    if origin in _MAPS:
        value = _rule_of(args[1]) if len(args) == 2 else Anything()
        return MapOf(None if isinstance(value, Anything) else value)
    if origin in _LISTS and len(args) < 2:
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


def _locate(target: str) -> Any:
    """The object `target` names (module path, then attributes), None if it cannot be imported."""
    try:
        return pydoc.locate(target)
    except Exception:  # whatever it raises, instantiate reports it when it builds the node
        return None
