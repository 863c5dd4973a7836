"""Config plumbing shared by run.py, the tests and the tools: resolvers, composition, safe instantiation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nlpexp import NlpexpError, first_line
from nlpexp.components import BUILTIN_TARGETS, for_building
from nlpexp.paths import group_dir, ledger_dir, project_root, require_config_dir  # noqa: F401 (group_dir: for callers)


def __getattr__(name: str) -> Path:
    """PROJECT_ROOT, CONFIG_DIR, PRESETS_DIR: nlpexp.paths.project_root() and its conf/ and experiments/, read when
    asked (so that NLPEXP_ROOT set after this import still counts)."""
    folders = {"PROJECT_ROOT": "", "CONFIG_DIR": "conf", "PRESETS_DIR": "experiments"}
    if name not in folders:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return project_root() / folders[name]


# What a config may build: nlpexp's own components (TARGET_ALLOWLIST), what installed packages declare, what the
# person running the command trusts (nlpexp.components.allowlist()).
TARGET_ALLOWLIST = BUILTIN_TARGETS


def register_resolvers() -> None:
    from nlpexp.distributed import is_multiprocess

    OmegaConf.register_resolver("nlpexp_root", lambda: str(project_root()), replace=True)
    # true under torchrun / accelerate launch with more than one process (see nlpexp.distributed)
    OmegaConf.register_resolver("nlpexp_multiprocess", is_multiprocess, replace=True)
    OmegaConf.register_resolver("nlpexp_ledger_dir", ledger_dir, replace=True)  # conf/paths/default.yaml


register_resolvers()


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
    from nlpexp.trainer.duration import settle_duration

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
