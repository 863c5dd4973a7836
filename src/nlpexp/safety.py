"""The gate for code. Threat model: configs, presets and config dirs may come from other people; the person
typing the command line is trusted. A config must not run code that nlpexp.config.TARGET_ALLOWLIST does not
name, and dangerous switches (remote code, pickled weights, launcher shell lines) come from the command line or
the environment only.

check_config() sees the composed config *with* its hydra node, before anything is imported or built: every
`_target_` (exact names, no interpolation), the logging factories (`()`, `class`, `ext://`), hydra.job.env_set,
sweep parameters and the dangerous switches. run.py calls it (nlpexp.gate) before Hydra starts (every mode:
run, -m, --cfg, -cp/-cd/-cn); pipeline.run() calls check_run() again inside the job (each sweep trial too), and
Hydra itself instantiates under its execution allow-list (run.py's @hydra.main) as a second line.
"""

from __future__ import annotations

import copy
import logging
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from nlpexp import components
from nlpexp.errors import NlpexpError

log = logging.getLogger(__name__)

# What Hydra's logging config may construct or reference: what Hydra itself allows its logging beside the
# execution allow-list (hydra._internal.logging_config._BUILTIN_LOGGING_TARGETS).
LOGGING_FACTORIES = frozenset({"logging.StreamHandler", "logging.FileHandler", "colorlog.ColoredFormatter"})
LOGGING_STREAMS = frozenset({"ext://sys.stdout", "ext://sys.stderr"})
# key -> the environment variable that also turns it on; None: the command line only.
SWITCHES = {"model.trust_remote_code": "NLPEXP_TRUST_REMOTE_CODE",
            "model.allow_pickle_weights": "NLPEXP_ALLOW_PICKLE_WEIGHTS",
            # what the SLURM job script runs: shell lines, the interpreter, srun and sbatch options (--export=...)
            "hydra.launcher.setup": None, "hydra.launcher.python": None, "hydra.launcher.srun_args": None,
            "hydra.launcher.additional_parameters": None}
# Variables that change which program, library or code runs (or what git / torch / HF execute).
# (The sweeper itself passes NLPEXP_STUDY_* to its trials this way.)
_RUNTIME_ENV = re.compile(r".*PATH|LD_.*|DYLD_.*|PYTHON.*|GIT_.*|BASH_ENV|ENV|SHELL|HOME|IFS|PS4|NLPEXP_ROOT|"
                          r".*_OPTIONS|.*TRUST_REMOTE_CODE.*|.*ALLOW_PICKLE.*|TORCH_FORCE_.*|PERL5.*|RUBY.*|NODE_.*|"
                          r"JAVA_.*|.*_CA_BUNDLE|SSL_CERT_.*|NLPEXP_TRUST_.*", re.IGNORECASE)
# Keys no sweep may vary: what they name is code or environment, checked once before the sweep.
_UNSWEEPABLE = re.compile(r"(^|\.)(_target_|\(\)|class|_args_)($|\.)|^hydra\.|env_set")


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def allowed_target(target: Any) -> bool:
    return components.is_allowed(target)


def _raw(node: Any) -> Any:
    """A node's value as written: an interpolation stays the string `${...}`."""
    return node._value() if hasattr(node, "_value") else node


def iter_nodes(node: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """(parent path, key, raw value) of every key of every mapping, lists included."""
    if isinstance(node, DictConfig):
        for key in node.keys():
            child = node._get_node(key)
            yield path, str(key), _raw(child)
            yield from iter_nodes(child, f"{path}.{key}" if path else str(key))
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            yield from iter_nodes(node._get_node(i), f"{path}[{i}]")


_BUILDS_CONFIG = re.compile(r"\$\{\s*oc\.(create|decode)\s*:")  # resolvers that turn a string into config nodes


def check_targets(cfg: DictConfig) -> None:
    """Refuse the whole config if one `_target_` anywhere is not on the allow-list, exactly as written (and
    if a string would become config nodes, and so `_target_`s, only when resolved)."""
    for path, key, value in iter_nodes(cfg):
        if key == "_target_" and not allowed_target(value):
            raise NlpexpError(components.refusal(path, value))
        if isinstance(value, str) and _BUILDS_CONFIG.search(value):
            raise NlpexpError(f"{path}.{key}: oc.create / oc.decode are not allowed: they build config nodes "
                              f"(and `_target_`s) the check cannot see before they are resolved")


def check_logging(node: Any, where: str) -> None:
    """Hydra hands hydra.job_logging / hydra_logging to logging.config.dictConfig, which imports and calls
    `()` and `class` factories and imports `ext://` references."""
    for path, key, value in iter_nodes(node, where):
        if key in ("()", "class") and value not in LOGGING_FACTORIES:
            raise NlpexpError(f"{path}.{key}={value!r} is not allowed: logging may only use "
                              f"{', '.join(sorted(LOGGING_FACTORIES))}")
        if isinstance(value, str) and "ext:" in value and value not in LOGGING_STREAMS:
            raise NlpexpError(f"{path}.{key}={value!r} is not allowed: logging may only reference "
                              f"{', '.join(sorted(LOGGING_STREAMS))}")


def check_file_names(cfg: DictConfig) -> None:
    """The files a config may name keep their suffix: appending a ledger line or a log line (text a config
    controls) to ~/.bashrc or ~/.profile would run it in the next shell."""
    named = [("paths.ledger_file", _raw(cfg._get_node("paths")._get_node("ledger_file")), ".jsonl")] \
        if isinstance(cfg.get("paths"), DictConfig) and "ledger_file" in cfg.paths else []
    for part in ("job_logging", "hydra_logging"):
        node = OmegaConf.select(cfg, f"hydra.{part}", default=None)
        named += [(f"{path}.{key}", value, ".log") for path, key, value in iter_nodes(node, f"hydra.{part}")
                  if key == "filename"]
    for key, value, suffix in named:
        if value is not None and not (isinstance(value, str) and value.endswith(suffix)):
            raise NlpexpError(f"{key}={value!r} is not allowed: it must name a {suffix} file")


def check_env_set(env_set: Any) -> None:
    for name in (env_set or {}):
        if _RUNTIME_ENV.fullmatch(str(name)):
            raise NlpexpError(f"hydra.job.env_set.{name} is not allowed: it changes which program or code runs "
                              f"(PATH, PYTHONPATH, LD_*, GIT_*, ...); set it in your shell instead")


def check_sweep_keys(keys: Sequence[str], where: str) -> None:
    for key in keys:
        name = str(key).lstrip("+~")
        if _UNSWEEPABLE.search(name) or name in SWITCHES:
            raise NlpexpError(f"{where} sweeps {name!r}, which may not vary between trials: code, logging, "
                              f"environment and dangerous switches are checked once, before the sweep")


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def check_switches(cfg: DictConfig, command_line: Sequence[str]) -> list[str]:
    """The dangerous switches that are on; each must be set on the command line (or by its env variable)."""
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
    check_file_names(cfg)
    hydra = cfg.get("hydra") if isinstance(cfg, DictConfig) else None
    if hydra is not None:
        check_logging(hydra._get_node("job_logging"), "hydra.job_logging")
        check_logging(hydra._get_node("hydra_logging"), "hydra.hydra_logging")
        check_env_set(OmegaConf.select(hydra, "job.env_set"))
        params = OmegaConf.select(hydra, "sweeper.params", default=None)
        check_sweep_keys(list(params.keys()) if isinstance(params, DictConfig) else [], "hydra.sweeper.params")
    return check_switches(cfg, command_line)


def check_run(cfg: DictConfig) -> None:
    """Inside the job (single run or sweep trial): the job config and, under Hydra, its hydra config with the
    overrides of this job as the command line (a sweep's own parameters cannot name switches: see above)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        check_targets(cfg)  # called from Python (tests, tools): the caller composed cfg
        return
    combined = copy.deepcopy(cfg)
    with open_dict(combined):
        combined["hydra"] = HydraConfig.get()
    for key in check_config(combined, list(HydraConfig.get().overrides.task)):
        log.warning("%s is on (set on the command line): code from outside nlpexp may run in this process", key)
