"""The gate for code. Threat model: configs, presets and config dirs may come from other people; the person
typing the command line is trusted. A config must not run code that nlpexp.components.allowlist() does not
name, and dangerous switches (remote code, pickled weights, launcher shell lines) come from the command line or
the environment only. (What else a foreign file may set at all: nlpexp.file_keys, checked by nlpexp.gate.)

run.py's gate (nlpexp.gate) sees the composed config *with* its hydra node once, before Hydra starts (every mode:
run, -m, --cfg, -cp/-cd/-cn): every `_target_` (exact names, no interpolation), the sweep parameters and the
dangerous switches. A job started without that gate (from Python: tests, nlpexp.api) checks its config itself
(check_run); Hydra instantiates under its execution allow-list (run.py's @hydra.main) as a second line.
"""

from __future__ import annotations

import copy
import logging
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from nlpexp import NlpexpError, components
from nlpexp.adapters.omegaconf import child, raw

log = logging.getLogger(__name__)

# key -> the environment variable that also turns it on; None: the command line only.
SWITCHES = {"model.trust_remote_code": "NLPEXP_TRUST_REMOTE_CODE",
            "model.allow_pickle_weights": "NLPEXP_ALLOW_PICKLE_WEIGHTS",
            # what the SLURM job script runs: shell lines, the interpreter, srun and sbatch options (--export=...)
            "hydra.launcher.setup": None, "hydra.launcher.python": None, "hydra.launcher.srun_args": None,
            "hydra.launcher.additional_parameters": None}
# Keys no sweep may vary: what they name is code or environment, checked once before the sweep.
_UNSWEEPABLE = re.compile(r"(^|\.)(_target_|\(\)|class|_args_)($|\.)|^hydra\.|env_set")


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def iter_nodes(node: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """(parent path, key, raw value) of every key of every mapping, lists included."""
    if isinstance(node, DictConfig):
        for key in node.keys():
            yield path, str(key), raw(child(node, key))
            yield from iter_nodes(child(node, key), f"{path}.{key}" if path else str(key))
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            yield from iter_nodes(child(node, i), f"{path}[{i}]")


_BUILDS_CONFIG = re.compile(r"\$\{\s*oc\.(create|decode)\s*:")  # resolvers that turn a string into config nodes


def check_targets(cfg: DictConfig) -> None:
    """Refuse the whole config if one `_target_` anywhere is not on the allow-list, exactly as written (and
    if a string would become config nodes, and so `_target_`s, only when resolved)."""
    for path, key, value in iter_nodes(cfg):
        if key == "_target_" and not components.is_allowed(value):
            raise NlpexpError(components.refusal(path, value))
        if isinstance(value, str) and _BUILDS_CONFIG.search(value):
            raise NlpexpError(f"{path}.{key}: oc.create / oc.decode are not allowed: they build config nodes "
                              f"(and `_target_`s) the check cannot see before they are resolved")


def check_sweep_keys(keys: Sequence[str], where: str) -> None:
    for key in keys:
        name = str(key).lstrip("+~")
        if _UNSWEEPABLE.search(name) or name in SWITCHES:
            raise NlpexpError(f"{where} sweeps {name!r}, which may not vary between trials: code, logging, "
                              f"environment and dangerous switches are checked once, before the sweep")


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def check_switches(cfg: DictConfig, command_line: Sequence[str]) -> list[str]:
    """The keys hydra.sweeper.params sweeps, and the dangerous switches: returns those that are on; each must be
    set on the command line (or by its env variable)."""
    params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None)
    check_sweep_keys(list(params.keys()) if isinstance(params, DictConfig) else [], "hydra.sweeper.params")
    typed = {_override_key(o) for o in command_line}
    on = []
    for key, env in SWITCHES.items():
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        from_env = env is not None and env_flag(env)
        if value in (None, False, "") or (isinstance(value, DictConfig | ListConfig) and len(value) == 0):
            if from_env:
                on.append(key)
            continue
        if key not in typed and not from_env:
            how = f"`{key}=...` on the command line" + (f" or {env}=1 in the environment" if env else "")
            raise NlpexpError(f"{key} may not be set by a config file or preset: it runs code from elsewhere; "
                              f"the person running the command turns it on with {how}")
        on.append(key)
    return on


def check_config(cfg: DictConfig, command_line: Sequence[str] = ()) -> list[str]:
    """The gate: `cfg` composed with its hydra node; `command_line` the overrides the user typed.
    Returns the dangerous switches that are on."""
    check_targets(cfg)
    return check_switches(cfg, command_line)


_gated: list[bool] = []  # not empty while run.py's gate has passed the command that runs this process's jobs


@contextmanager
def gate_passed():
    """Around the jobs of a command that nlpexp.gate let through (run.py's launcher, nlpexp.boundary)."""
    _gated.append(True)
    try:
        yield
    finally:
        _gated.pop()


def check_run(cfg: DictConfig) -> None:
    """Inside the job (single run or sweep trial) that no gate checked (started from Python, or in a launcher's
    worker process): the job config and, under Hydra, its hydra config with the overrides of this job as the
    command line (a sweep's own parameters cannot name switches: see above). Gated: which switches are on."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        check_targets(cfg)  # called from Python (tests, tools): the caller composed cfg
        return
    combined = copy.deepcopy(cfg)
    with open_dict(combined):
        combined["hydra"] = HydraConfig.get()
    check = check_switches if _gated else check_config
    for key in check(combined, list(HydraConfig.get().overrides.task)):
        log.warning("%s is on (set on the command line): code from outside nlpexp may run in this process", key)
