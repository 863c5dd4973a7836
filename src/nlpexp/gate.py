"""run.py's security gate: compose exactly what `python run.py ARGV` would run, the hydra node included, before Hydra
builds anything (run, -m, --cfg, -cp/-cd/-cn alike): every `_target_` against the allow-list
(nlpexp.config.check_targets), every key a foreign config file sets against nlpexp.file_keys.FILE_KEYS, then the
sweep parameters and the dangerous switches (nlpexp.config.check_switches). Once per command: a job run after it
does not check again (nlpexp.config.check_run). A seed project's `--flag` and a sweep that cannot run as typed
are refused with what to type instead."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from omegaconf import DictConfig, OmegaConf

from nlpexp import NlpexpError, adapters
from nlpexp.adapters import child, is_interpolation, is_none, raw
from nlpexp.config import CONFIG_DIR, INSTALLED, PRESETS_DIR, check_sweep_keys, check_switches, check_targets
from nlpexp.redaction import take_config_secrets


def check_command_line(argv: Sequence[str], calling_file: str, config_path: str, config_name: str) -> None:
    """The same search path, config name, mode and overrides as Hydra's own start; for a sweep, also each option of
    every config group it sweeps."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from hydra.types import RunMode
    from omegaconf.errors import OmegaConfBaseException

    from nlpexp.config import hydra_error_line, require_config_dir

    check_flags(argv)  # `--epochs 5`: the override to type, not argparse's usage block
    args = adapters.args_parser().parse_intermixed_args(list(argv))
    if args.config_path is None and args.config_dir is None:
        require_config_dir()
    if args.experimental_rerun is not None:
        raise NlpexpError("--experimental-rerun is not allowed: it unpickles a file (code); re-run a run with "
                          "--config-path <run dir> --config-name config")
    if args.config_dir is not None and not os.path.isdir(args.config_dir):
        raise NlpexpError(f"--config-dir {args.config_dir}: not a directory")
    name = args.config_name or config_name
    try:
        hydra = adapters.main_hydra(calling_file, args.config_path or config_path, args.config_dir)
        _check_primary_searchpath(hydra, name, args.overrides)
        parsed = hydra.config_loader.parse_overrides(name, args.overrides)
        mode = RunMode.MULTIRUN if args.multirun else hydra.get_mode(name, args.overrides, parsed_overrides=parsed)
        multirun = mode == RunMode.MULTIRUN
        cfg = hydra.compose_config(config_name=name, overrides=args.overrides, run_mode=mode or RunMode.RUN,
                                   parsed_overrides=parsed)
        take_config_secrets(cfg)  # before any line of this command prints a value copied from one
        check_sweep_keys([o.key_or_group for o in parsed if o.is_sweep_override()], "the command line")
        groups = set(OmegaConf.select(cfg, "hydra.runtime.choices", default={}) or {})
        typed = {o.key_or_group for o in parsed if o.key_or_group not in groups}  # values the person gave
        inspecting = bool(args.cfg or args.info or args.help or args.hydra_help)  # shows the config, runs nothing
        check_sweep_usage(cfg, parsed, multirun, inspecting)
        _check(cfg, _foreign_settings(hydra, name, args.overrides, multirun), typed, args.overrides)
        if multirun and not inspecting:
            _validate_sweep_base(cfg)
        if any(o.is_sweep_override() for o in parsed) or OmegaConf.select(cfg, "hydra.sweeper.params", default=None):
            _check_swept_configs(hydra, name, cfg, parsed, typed, args.overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise NlpexpError(hydra_error_line(err)) from err
    finally:
        GlobalHydra.instance().clear()


def _check_swept_configs(hydra, name: str, cfg: DictConfig, parsed: list, typed: set, command_line: list) -> None:
    """Every config the sweep could compose (nlpexp.swept_configs), checked as the base config was."""
    from hydra.types import RunMode

    from nlpexp.swept_configs import swept_command_lines

    combined = _foreign(hydra, name, command_line)  # then every combination of the swept groups' values
    for overrides in swept_command_lines(cfg, parsed, hydra.config_loader, name, combined):
        option = hydra.compose_config(config_name=name, overrides=overrides, run_mode=RunMode.MULTIRUN)
        _check(option, _foreign_settings(hydra, name, overrides, True), typed, command_line)


def _check_primary_searchpath(hydra, name: str, overrides: Sequence[str]) -> None:
    """A foreign primary config (a saved run's, -cp) may not extend the search path: Hydra imports the packages
    its `pkg://` entries name while it composes, before any other check. The person's hydra.searchpath= wins."""
    found = adapters.primary_config(hydra, name)
    if found is None or any(o.lstrip("+").startswith("hydra.searchpath=") for o in overrides):
        return
    (scheme, _, folder), config = found[0].partition("://"), found[1]
    hydra_node = config.get("hydra") if isinstance(config, DictConfig) else None
    if _trusted(scheme, folder) or not isinstance(hydra_node, DictConfig) or "searchpath" not in hydra_node:
        return
    from nlpexp.file_keys import check_setting

    file = os.path.join(folder, name if name.endswith(".yaml") else f"{name}.yaml")
    check_setting(file, "hydra.searchpath", raw(child(hydra_node, "searchpath")), {})


def _trusted(scheme: str, folder: str) -> bool:
    """A search path entry of installed code, or the project's own conf/ or experiments/ (or a folder below)."""
    folder = os.path.realpath(folder)
    own = [os.path.realpath(d) for d in (CONFIG_DIR, PRESETS_DIR)]
    return scheme in INSTALLED or any(folder == d or folder.startswith(d + os.sep) for d in own)


def _foreign(hydra, name: str, overrides: Sequence[str]) -> bool:
    """Does the composition read a folder other than conf/, experiments/ and installed packages?"""
    sources = (source.partition("://") for source in adapters.sources(hydra, name, overrides))
    return not all(_trusted(scheme, folder) for scheme, _, folder in sources)


def _foreign_settings(hydra, name: str, overrides: Sequence[str], multirun: bool) -> Iterable:
    """What foreign config files set (foreign_settings); none, and nothing more to load, when the
    composition reads conf/, experiments/ and installed packages only (the usual command)."""
    if not _foreign(hydra, name, overrides):
        return ()
    return foreign_settings(hydra, name, overrides, multirun)  # walked after the `_target_`s are checked


class Setting(NamedTuple):
    file: str  # the file that set it
    key: str  # full dotted key
    value: Any  # as written: an interpolation stays the string `${...}`


def foreign_settings(hydra: Any, name: str, overrides: Sequence[str], multirun: bool) -> Iterator[Setting]:
    """Every leaf key a foreign file sets, in the order Hydra merges the files (`hydra`: adapters.main_hydra;
    nlpexp.gate calls it only when a source of the composition is neither the project's nor installed). Whether a
    file is foreign goes by the folder Hydra found it in; a foreign folder's file must lie in that folder (a link
    out of it would bring in any file the person can read, or pass a foreign file off as the project's)."""
    for source, config_path, config in adapters.loaded_configs(hydra, name, overrides, multirun):
        scheme, _, folder = source.partition("://")
        if _trusted(scheme, folder):
            continue
        folder = os.path.realpath(folder)
        inner = config_path.partition("/")[2] if scheme == "nlpexp-presets" else config_path  # its folder is the group
        written = os.path.join(folder, inner if inner.endswith(".yaml") else f"{inner}.yaml")  # Hydra's file name
        file = os.path.realpath(written)
        if not file.startswith(folder + os.sep):
            raise NlpexpError(f"{written} is a link to {file}, outside its config dir {folder}: a config file from "
                              f"someone else must be a file of its own folder (copy what it links to there)")
        for key, value in _leaves(config, ""):
            yield Setting(file, key, value)


def _leaves(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """(dotted key, value as written) of every leaf: a scalar, a list, an empty or null mapping, an interpolation."""
    if isinstance(node, DictConfig) and not is_none(node) and not is_interpolation(node) and len(node):
        for key in node.keys():
            yield from _leaves(child(node, key), f"{prefix}.{key}" if prefix else str(key))
    elif OmegaConf.is_config(node) and not is_interpolation(node) and not is_none(node):
        yield prefix, OmegaConf.to_container(node, resolve=False)
    else:
        yield prefix, raw(node)


def _check(cfg: DictConfig, settings: Iterable, typed: set[str], command_line: Sequence[str]) -> None:
    """Code first (the `_target_`s), then what foreign files set (a key the person typed too is theirs), then
    the sweep parameters and the dangerous switches."""
    check_targets(cfg)
    if settings:
        from hydra.types import RunMode

        from nlpexp.file_keys import ROOTS, check_setting
        from nlpexp.file_values import secret_copy

        roots = {root: _resolved(cfg, f"paths.{root}") for root in (*ROOTS, "data_dir")}
        multirun = cfg.hydra.mode == RunMode.MULTIRUN  # the run's own dir: its trials' are below the sweep dir
        roots["output_dir"] = _resolved(cfg, "hydra.sweep.dir" if multirun else "hydra.run.dir")
        for setting in (s for s in settings if s.key not in typed):
            check_setting(setting.file, setting.key, setting.value, roots)
            if copied := secret_copy(cfg, setting.key, setting.value):
                raise NlpexpError(f"{setting.key} may not be set by a config file or preset: {setting.file} sets it "
                                  f"to {setting.value!r}, a copy of {copied}, which is or holds a secret")
    check_switches(cfg, command_line)


def _validate_sweep_base(cfg: DictConfig) -> None:
    """The config every trial of a sweep starts from, against the schema, before a study or a trial exists: a bad
    base setting is one error line, not a failed first trial (each trial checks its own config again)."""
    from omegaconf import open_dict, read_write

    from nlpexp.schema import validate

    base = cfg.copy()
    with read_write(base), open_dict(base):
        base.paths.output_dir = str(base.hydra.sweep.dir)  # ${hydra:runtime.output_dir} has no job yet
    validate(base)


def _resolved(cfg: DictConfig, key: str) -> str | None:
    from omegaconf.errors import OmegaConfBaseException

    try:
        value = OmegaConf.select(cfg, key, default=None)
    except OmegaConfBaseException:
        return None
    return os.path.abspath(os.path.expanduser(str(value))) if value else None


# The seed projects' argparse flags -> the override that does the same here ("{}" takes the flag's value).
SEED_FLAGS = {
    "epochs": "trainer.max_epochs={}", "num_epochs": "trainer.max_epochs={}", "max_steps": "trainer.max_steps={}",
    "batch_size": "trainer.batch_size={}", "lr": "optimizer.lr={}", "learning_rate": "optimizer.lr={}",
    "weight_decay": "optimizer.weight_decay={}", "warmup_ratio": "scheduler.warmup_ratio={}",
    "warmup_steps": "scheduler.warmup_steps={}", "seed": "seed={}", "mode": "mode={}", "model": "model={}",
    "model_name": "model.name_or_path={}", "max_len": "model.max_seq_length={}",
    "max_seq_length": "model.max_seq_length={}", "train_data": "data=files data.train={}",
    "val_data": "data=files data.validation={}", "valid_data": "data=files data.validation={}",
    "dev_data": "data=files data.validation={}", "test_data": "data=files data.test={}",
    "data_dir": "data.root={}", "output_dir": "hydra.run.dir={}", "fp16": "trainer.precision=fp16",
    "bf16": "trainer.precision=bf16",
}


def check_flags(argv: Sequence[str]) -> None:
    """A `--flag` Hydra does not know is refused with the override to type (argparse would print its usage)."""
    known = adapters.command_line_flags()
    for index, arg in enumerate(argv):
        if not arg.startswith("--") or arg.split("=", 1)[0] in known:
            continue
        name, _, value = arg[2:].partition("=")
        if not value and index + 1 < len(argv) and not argv[index + 1].startswith("-") and "=" not in argv[index + 1]:
            value = argv[index + 1]
        override = SEED_FLAGS.get(name.replace("-", "_"))
        if override:
            raise NlpexpError(f"run.py takes overrides, not flags: use {override.format(value or '<value>')} "
                              f"(instead of {arg}{' ' + value if value and '=' not in arg else ''})")
        raise NlpexpError(f"run.py takes overrides, not flags: {arg.split('=', 1)[0]} is none of Hydra's options; "
                          f"settings are written group.setting=value, e.g. trainer.batch_size=32 (`python run.py "
                          f"--help` lists them)")


def check_sweep_usage(cfg, parsed: list, multirun: bool, inspecting: bool) -> None:
    """A sweep preset or sweep syntax without -m, and a sweep the chosen sweeper cannot draw, as one line."""
    from hydra.core.override_parser.types import ValueType

    preset = (cfg.hydra.runtime.choices or {}).get("hparams_search")
    if preset and not multirun and not inspecting:
        raise NlpexpError(f"hparams_search={preset} is a sweep preset: add -m "
                          f"(python run.py -m hparams_search={preset} ...); without it nothing would be swept")
    sweeper = str(cfg.hydra.sweeper.get("_target_", ""))
    drawn = [o for o in parsed
             if o.value_type == ValueType.INTERVAL_SWEEP or "interval(" in o.input_line.replace(" ", "")]
    if multirun and drawn and sweeper.endswith("BasicSweeper"):
        line = drawn[0].input_line
        raise NlpexpError(f"{line}: interval() is drawn by a study sweeper, not Hydra's basic one: add "
                          f"hydra/sweeper=nlpexp (python run.py -m hydra/sweeper=nlpexp '{line}'), or pick an "
                          f"hparams_search preset")
