"""Every config a sweep could compose, as the command lines the gate (nlpexp.gate) composes and checks before the
sweep starts. A sweep gives config groups their values on the command line or in hydra.sweeper.params, in any form:
the options of a choice(), glob() or range() (numbers name options too; an interval() cannot be listed, and Hydra
refuses it in one line), a plain option, a list of options Hydra merges, `+new_group`, `group@package`. A foreign
option is a foreign file. Where files from outside conf/ take part, every combination of the swept groups' values
is composed: a defaults list may choose a file by another group's value (`optional /x@_global_: ${task}`), so two
options checked one by one could miss what they load together.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

from omegaconf import DictConfig, OmegaConf

from nlpexp import NlpexpError

MAX_COMBINATIONS = 64  # compositions checked for one sweep (a tenth to a third of a second each)


def swept_command_lines(cfg: DictConfig, parsed: list, loader, name: str, combined: bool) -> Iterator[list[str]]:
    """The command line with swept groups' values in place of their sweeps: each value on its own, or (combined)
    every combination of them."""
    values = _group_values(cfg, parsed, loader, name)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override() and o.key_or_group not in
             {key.lstrip("+").split("@")[0] for key in values}]
    if not combined or len(values) < 2:
        yield from ([*fixed, f"{key}={value}"] for key, options in values.items() for value in options)
        return
    count = math.prod(len(options) for options in values.values())
    if count > MAX_COMBINATIONS:
        raise NlpexpError(f"this sweep varies {', '.join(values)} together ({count} combinations) with configs from "
                          f"outside conf/: more than the {MAX_COMBINATIONS} the security gate composes and checks "
                          f"before a sweep; sweep fewer groups at once")
    for combination in itertools.product(*([f"{key}={value}" for value in options] for key, options in values.items())):
        yield [*fixed, *combination]


def _group_values(cfg: DictConfig, parsed: list, loader, name: str) -> dict[str, list[str]]:
    """Swept group (as the override names it: `+group@package`) -> every value the sweep may give it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None) or {}
    lines = [o.input_line for o in parsed if o.is_sweep_override()] + [f"{k}={v}" for k, v in params.items()]
    groups = set(OmegaConf.select(cfg, "hydra.runtime.choices", default={}) or {})
    typed = [o.input_line for o in parsed if not o.is_sweep_override()]
    parser = OverridesParser.create(config_loader=loader)  # a glob(...) lists the group's options through it
    values: dict[str, list[str]] = {}
    for sweep in parser.parse_overrides([line for line in lines if _names_a_group(line, groups, loader, name, typed)]):
        if sweep.is_delete():
            continue
        options = values.setdefault(sweep.get_key_element(), [])  # the command line's and the params' together
        listed = sweep.sweep_string_iterator() if sweep.is_sweep_override() else [sweep.input_line.split("=", 1)[1]]
        options += [value for value in listed if value not in options]
    return values


def _names_a_group(line: str, groups: set, loader, name: str, typed: list[str]) -> bool:
    """Does the override `line` set a config group (one of the composition's, or a group it would add)?"""
    group = line.split("=", 1)[0].lstrip("+~").split("@", 1)[0].strip()
    return group in groups or bool(loader.get_group_options(group, config_name=name, overrides=typed))
