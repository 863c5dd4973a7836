"""The settings of a component the schema (nlpexp.schema) does not describe, such as a user's own loss, model,
dataset or task: derived from its own signature, so that it needs no edit of nlpexp to be validated like nlpexp's.

A class's settings are the parameters of its `__init__` and, where that passes `**kwargs` on, of its bases' (the
MRO), up to a base the schema describes (a ModelSpec subclass keeps every rule of `model`) or one without `**kwargs`
(closed: an unknown key is refused with a did-you-mean). The parameters the code passes when it builds the node
(ByTarget.bound: a task's model and data, a loss's model, an optimizer's params) are not settings; those without a
default are required, except in a `_partial_` node, which the code completes. int/float/bool/str annotations (also
`X | None`, Literal[...]) become Int/Num/Bool/Text rules, others accept anything. ByTarget.other's keys (settings
every node of the kind has, such as a task's monitor) keep their rules.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
import typing
from typing import Any

from nlpexp.components import BUILTIN_TARGETS, is_allowed
from nlpexp.rules import Anything, Bool, ByTarget, Group, Int, Maybe, Num, OneOf, Rule, Text

_RULES = {int: Int(), float: Num(), bool: Bool(), str: Text(meaning="a string", empty=True)}
_NAMED = {t.__name__: rule for t, rule in _RULES.items()}


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


def _derived(built: Any, rule: ByTarget, partial: bool) -> Group:
    fields: dict[str, Any] = {}
    required: list[str] = []
    base, is_open = Group({}), True
    for init in _inits(built):
        described = _described(rule, init)
        if described is not None:
            base, is_open = described, described.open
            break
        closed = _add_parameters(init, rule.bound, fields, required)
        if closed:
            is_open = False
            break
    common = rule.other
    return Group({**fields, **base.fields, **common.fields},
                 required=tuple(dict.fromkeys((*common.required, *base.required,
                                               *([] if partial else required)))),
                 open=is_open, checks=(*common.checks, *base.checks))


def _inits(built: Any):
    """What builds the object: a function itself; for a class, the classes of its MRO that define __init__ (object
    accepts no settings: the end of the chain)."""
    if not isinstance(built, type):
        yield built
        return
    for cls in built.__mro__:
        if cls is object:
            yield object
            return
        if "__init__" in vars(cls):
            yield cls


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
        fields[parameter.name] = _rule(hints.get(parameter.name, parameter.annotation), parameter.default)
        if parameter.default is parameter.empty:
            required.append(parameter.name)
    return not any(p.kind is p.VAR_KEYWORD for p in parameters)


def _rule(annotation: Any, default: Any) -> Rule:
    rule = _rule_of(annotation)
    return Maybe(rule) if default is None and not isinstance(rule, Maybe | Anything) else rule


def _rule_of(annotation: Any) -> Rule:
    if isinstance(annotation, str):  # not resolvable (a name imported for type checking only): read as written
        text = annotation.replace(" ", "")
        if text.endswith("|None") or text.startswith("None|"):
            inner = _NAMED.get(text.removesuffix("|None").removeprefix("None|"))
            return Maybe(inner) if inner else Anything()
        return _NAMED.get(text, Anything())
    if annotation in _RULES:
        return _RULES[annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return OneOf(tuple(args))
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        inner = _rule_of(rest[0]) if len(rest) == 1 else Anything()
        return Anything() if isinstance(inner, Anything) else Maybe(inner)
    return Anything()


def _hints(function: Any) -> dict:
    """The annotations resolved, each on its own: one that names a type imported for type checking only leaves the
    others resolved (it is read as written). The code is installed code's own, which the allow-list vouched for."""
    try:
        return typing.get_type_hints(function)
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
    for target, group in rule.groups.items():
        module, _, name = target.rpartition(".")
        if module in sys.modules and getattr(sys.modules[module], name, None) is init:
            return group
    return None


def _locate(target: str) -> Any:
    """The object `target` names (module path, then attributes), None if it cannot be imported."""
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]))
        except Exception:  # whatever it raises, instantiate reports it when it builds the node
            continue
        for attribute in parts[cut:]:
            found = getattr(found, attribute, None)
        return found
    return None
