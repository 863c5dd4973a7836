"""Config plumbing shared by run.py, the tests and the tools (resolvers, composition, safe instantiation), and the
checks for code (threat model: docs/security.md): every `_target_` on the allow-list, the dangerous switches from
the command line or the environment only. run.py's gate (nlpexp.gate) runs them once before Hydra starts; a job
that no gate checked (started from Python: tests, nlpexp.api) checks its own config (check_run); Hydra
instantiates under its execution allow-list (run.py's @hydra.main, instantiate() here) as a second line.
"""

from __future__ import annotations

import copy
import logging
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from nlpexp import NlpexpError, adapters, components, first_line, is_multiprocess
from nlpexp.components import for_building
from nlpexp.paths import group_dir, ledger_dir, project_root, require_config_dir  # noqa: F401 (group_dir: for callers)

log = logging.getLogger(__name__)
INSTALLED = ("pkg", "structured")  # Hydra's schemes of configs shipped inside installed packages: code, trusted as such


def __getattr__(name: str) -> Path:
    """PROJECT_ROOT, CONFIG_DIR, PRESETS_DIR: nlpexp.paths.project_root() and its conf/ and experiments/, read when
    asked (so that NLPEXP_ROOT set after this import still counts)."""
    folders = {"PROJECT_ROOT": "", "CONFIG_DIR": "conf", "PRESETS_DIR": "experiments"}
    if name not in folders:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return project_root() / folders[name]


OmegaConf.register_resolver("nlpexp_root", lambda: str(project_root()), replace=True)
# true under torchrun / accelerate launch with more than one process (see nlpexp.is_multiprocess)
OmegaConf.register_resolver("nlpexp_multiprocess", is_multiprocess, replace=True)
OmegaConf.register_resolver("nlpexp_ledger_dir", ledger_dir, replace=True)  # conf/paths/default.yaml


def compose(overrides: list[str] | None = None, config_name: str = "config", with_hydra: bool = False) -> DictConfig:
    """Compose the run config in-process (tests, tools); `paths.output_dir` must be overridden. `with_hydra`: with
    Hydra's own node (the sweeper's settings), as a sweep sees it.

    Composition errors (unknown option, misspelled key, bad override syntax) become one-line NlpexpErrors.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from nlpexp.redaction import take_secrets
    from nlpexp.trainer import settle_duration

    take_secrets()  # an in-process run starts here, from the caller's environment (no env_set applied)
    require_config_dir()
    try:
        with initialize_config_dir(config_dir=str(project_root() / "conf")):
            cfg = hydra_compose(config_name=config_name, overrides=overrides or [], return_hydra_config=with_hydra)
    except (HydraException, OmegaConfBaseException) as err:
        raise NlpexpError(hydra_error_line(err)) from err
    settle_duration(cfg, overrides or [])  # trainer.max_epochs or max_steps: whichever the overrides set
    return cfg


def default_paths() -> dict[str, str]:
    """The `paths` group of the composed config, resolved (its NLPEXP_* variables included): the one source of every
    tool's default locations (runs_dir, sweeps_dir, ledger_file, registry_dir). Nothing runs; `output_dir`, a run's
    own, is left out. For the commands: a run is handed its own paths (its `registry:` model is looked up in its
    paths.registry_dir, nlpexp.model.registry.use_registry); inside Hydra (a sweep's end), with the job's overrides."""
    from hydra import compose as hydra_compose
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    overrides = ["paths.output_dir=null"]
    if GlobalHydra.instance().is_initialized():
        job = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
        cfg = hydra_compose(config_name="config", overrides=[*job, *overrides])
    else:
        cfg = compose(overrides)
    paths = OmegaConf.to_container(cfg.paths, resolve=True)
    paths.pop("output_dir")
    return paths


def hydra_error_line(err: Exception) -> str:
    """A composition error of Hydra (and the OmegaConf error it wraps) as one line: what to type instead where
    nlpexp.guidance knows it (the nearest option or key, -m for a sweep), else Hydra's own words."""
    from nlpexp import guidance

    cause = first_line(err.__cause__) if err.__cause__ and str(err.__cause__).strip() else ""
    message = f"{err}\n{cause}"
    for rewrite in (guidance.suggest_option, guidance.suggest_key, guidance.sweep_without_multirun):
        if line := rewrite(message):
            return line
    return one_line(message)


def one_line(message: str) -> str:
    """Hydra's multi-line composition messages as one line: lines joined by '; ', option lists by ', '."""
    parts: list[str] = []
    for line in (ln.strip() for ln in message.split("Config search path:")[0].splitlines()):
        line = line.rstrip(".")
        if not line or line.startswith("full_key:") or line.startswith("object_type="):
            continue
        if parts and parts[-1].endswith(":"):
            parts[-1] += " " + line
        elif parts and ":" in parts[-1] and " " not in line and parts[-1].rsplit(":", 1)[0].startswith("Available"):
            parts[-1] += ", " + line
        else:
            parts.append(line)
    return "; ".join(parts)


def instantiate(node: Any, **kwargs: Any) -> Any:
    """hydra.utils.instantiate restricted to what configs may build (nlpexp.components)."""
    from hydra.errors import InstantiationException
    from hydra.utils import execution_whitelist
    from hydra.utils import instantiate as hydra_instantiate

    try:
        with execution_whitelist(for_building(node), reset=True):
            return hydra_instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, NlpexpError):
            raise cause from None
        raise NlpexpError(first_line(err)) from err


def to_container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)


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
    """(parent path, key, value as written: an interpolation stays `${...}`) of every key of every mapping, lists
    included."""
    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node, resolve=False)
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, str(key), value
            yield from iter_nodes(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from iter_nodes(value, f"{path}[{i}]")


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
        name = adapters.dotted(str(key).lstrip("+~"))  # `hydra[job_logging]` is hydra.job_logging
        if _UNSWEEPABLE.search(name) or name in SWITCHES:
            raise NlpexpError(f"{where} sweeps {name!r}, which may not vary between trials: code, logging, "
                              f"environment and dangerous switches are checked once, before the sweep")


def check_switches(cfg: DictConfig, command_line: Sequence[str]) -> list[str]:
    """The keys hydra.sweeper.params sweeps, and the dangerous switches: returns those that are on; each must be
    set on the command line (or by its env variable)."""
    params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None)
    check_sweep_keys(list(params.keys()) if isinstance(params, DictConfig) else [], "hydra.sweeper.params")
    typed = {o.split("=", 1)[0].lstrip("+~") for o in command_line}
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
    if not _gated:
        check_targets(combined)
    for key in check_switches(combined, list(HydraConfig.get().overrides.task)):
        log.warning("%s is on (set on the command line): code from outside nlpexp may run in this process", key)
