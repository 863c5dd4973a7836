"""Config plumbing shared by run.py, the tests and the tools: resolvers, composition, safe instantiation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nlpexp.errors import NlpexpError

PROJECT_ROOT = Path(os.environ.get("NLPEXP_ROOT", Path(__file__).resolve().parents[2]))
CONFIG_DIR = PROJECT_ROOT / "conf"

# Experiment configs may come from other people: `_target_` may only name code from these packages.
TARGET_ALLOWLIST = [
    "nlpexp.*",
    "torch.optim.*",
    "transformers.*",
    "sentence_transformers.*",
    "optuna.*",
]


def _project_root() -> str:
    return str(PROJECT_ROOT)


def register_resolvers() -> None:
    OmegaConf.register_resolver("nlpexp_root", _project_root, replace=True)


register_resolvers()


def compose(overrides: list[str] | None = None, config_name: str = "config") -> DictConfig:
    """Compose the run config in-process (tests, tools); `paths.output_dir` must be overridden."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR)):
        return hydra_compose(config_name=config_name, overrides=overrides or [])


def instantiate(node: Any, **kwargs: Any) -> Any:
    """hydra.utils.instantiate restricted to TARGET_ALLOWLIST."""
    from hydra.errors import InstantiationException
    from hydra.utils import execution_whitelist
    from hydra.utils import instantiate as hydra_instantiate

    try:
        with execution_whitelist(TARGET_ALLOWLIST, reset=True):
            return hydra_instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, NlpexpError):
            raise cause from None
        raise NlpexpError(_first_line(err)) from err


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def to_container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
