"""The value rules of the config schema (nlpexp.schema): each says whether a plain value is allowed (`ok`) and, for
the error line, what is allowed in words (`str`: "an integer >= 1"). A component declares them on its own parameters
(`batch_size: Annotated[int, Int(1)]`, read by nlpexp.derived); the schema lists them for a library's class."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated


class Rule:
    """ok(value) -> bool; str(rule): what it allows, in words."""


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)  # true is no batch size


@dataclass(frozen=True)
class Int(Rule):
    lo: int | None = None
    hi: int | None = None

    def ok(self, value) -> bool:
        return isinstance(value, int) and _is_number(value) and (self.lo is None or value >= self.lo) and \
            (self.hi is None or value <= self.hi)

    def __str__(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"an integer in [{self.lo}, {self.hi}]"
        if self.lo == 1:
            return "a positive integer"
        return "an integer" + (f" >= {self.lo}" if self.lo is not None else "") + \
            (f" <= {self.hi}" if self.hi is not None else "")


@dataclass(frozen=True)
class Num(Rule):
    """A finite number (an int is a number, a bool is not); `lo_open`/`hi_open` exclude the bound."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def ok(self, value) -> bool:
        if not _is_number(value) or not math.isfinite(value):
            return False
        return (self.lo is None or (value > self.lo if self.lo_open else value >= self.lo)) and \
            (self.hi is None or (value < self.hi if self.hi_open else value <= self.hi))

    def __str__(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"a number in {'(' if self.lo_open else '['}{self.lo}, {self.hi}{')' if self.hi_open else ']'}"
        if self.lo == 0 and self.lo_open:
            return "a positive number"
        return f"a number {'>' if self.lo_open else '>='} {self.lo}" if self.lo is not None else "a number"


@dataclass(frozen=True)
class OneOf(Rule):
    """One of `choices`, compared as text: `trainer.precision=32` arrives as the int 32."""

    choices: tuple

    def ok(self, value) -> bool:
        return (isinstance(value, str) or _is_number(value)) and str(value) in map(str, self.choices)

    def __str__(self) -> str:
        return "one of " + ", ".join(map(str, self.choices))


@dataclass(frozen=True)
class Bool(Rule):
    def ok(self, value) -> bool:
        return isinstance(value, bool)

    def __str__(self) -> str:
        return "true or false"


@dataclass(frozen=True)
class Text(Rule):
    """A string, not empty unless `empty`, matching `pattern` (whole) if given; `meaning`: what it is in words."""

    pattern: str | None = None
    meaning: str = "a non-empty string"
    empty: bool = False

    def ok(self, value) -> bool:
        return isinstance(value, str) and (self.empty or bool(value)) and \
            (self.pattern is None or bool(re.fullmatch(self.pattern, value)))

    def __str__(self) -> str:
        return self.meaning


@dataclass(frozen=True)
class ListOf(Rule):
    item: Rule
    length: int | None = None
    min_length: int = 0

    def ok(self, value) -> bool:
        return isinstance(value, list) and (self.length is None or len(value) == self.length) and \
            len(value) >= self.min_length and all(self.item.ok(v) for v in value)

    def __str__(self) -> str:
        if self.length:
            return f"a list of {self.length} × ({self.item})"
        return f"a list of ({self.item})" + (", not empty" if self.min_length else "")


@dataclass(frozen=True)
class MapOf(Rule):
    """A mapping of names (allowed by `key`, when given) to values allowed by `value` (any value when None)."""

    value: Rule | None = None
    key: Rule | None = None

    def ok(self, value) -> bool:
        return isinstance(value, dict) and (self.value is None or all(self.value.ok(v) for v in value.values())) \
            and (self.key is None or all(self.key.ok(k) for k in value))

    def __str__(self) -> str:
        if self.key:
            return f"a mapping of {self.key} to {self.value or 'anything'}"
        return "a mapping" + (f" of names to {self.value}" if self.value else "")


@dataclass(frozen=True)
class Maybe(Rule):
    """`rule`, or null."""

    rule: Rule

    def ok(self, value) -> bool:
        return value is None or self.rule.ok(value)

    def __str__(self) -> str:
        return f"{self.rule} or null"


@dataclass(frozen=True)
class Either(Rule):
    rules: tuple[Rule, ...]

    def ok(self, value) -> bool:
        return any(rule.ok(value) for rule in self.rules)

    def __str__(self) -> str:
        return " or ".join(map(str, self.rules))


@dataclass(frozen=True)
class Anything(Rule):
    def ok(self, value) -> bool:
        return True

    def __str__(self) -> str:
        return "anything"


@dataclass(frozen=True)
class Group:
    """The settings of one config node: a rule (or a nested Group) per key. `required` keys must be present; an
    `open` group (a library class nlpexp does not describe in full) accepts keys beyond `fields`; `checks` see the
    whole node (a plain dict) for rules between keys."""

    fields: Mapping[str, Rule | Group | ByTarget]
    required: tuple[str, ...] = ()
    open: bool = False
    checks: tuple[Callable[[dict, str], None], ...] = field(default=())


@dataclass(frozen=True)
class ByTarget:
    """A node whose settings depend on the class it builds: the Group of its `_target_`; `other`: the settings every
    node of the kind has (with their rules) and, open, the node of a class known neither here nor by its signature.
    A class of one's own is described by its signature (nlpexp.derived), less the `bound` names: what the code
    passes when it builds the node (a task's model and data, a loss's model); those without a default are
    required, except in a `_partial_` node, which the code completes. A parameter whose class (or a base) `nodes`
    names, as module.qualname, is a config node checked by that rule (a task's `sts: DataSpec` as `data` is)."""

    groups: Mapping[str, Group]
    other: Group = field(default_factory=lambda: Group({}, open=True))
    nullable: bool = False
    bound: tuple[str, ...] = ()
    nodes: Mapping[str, Group | ByTarget] = field(default_factory=dict)

    def group(self, target: str | None) -> Group:
        return self.groups.get(target or "", self.other)


NAME = Text()
Name = Annotated[str, NAME]  # a non-empty string
SEED = Int(0, 2**32 - 1)  # numpy's seed range
Seed = Annotated[int, SEED]
Positive = Annotated[int, Int(1)]
PositiveNumber = Annotated[float, Num(0, lo_open=True)]
MONITOR = Text(r"val/\S+", "'val/<metric>'")  # a task's: the validation metric that picks its best checkpoint
Monitor = Annotated[str, MONITOR]
POOLING = OneOf(("mean", "cls", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"))  # sentence-transformers'
Pooling = Annotated[str, POOLING]
