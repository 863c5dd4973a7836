"""Config plumbing shared by run.py, the tests and the tools: resolvers, composition, safe instantiation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nlpexp.errors import NlpexpError, first_line

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
    from nlpexp.distributed import is_multiprocess

    OmegaConf.register_resolver("nlpexp_root", _project_root, replace=True)
    # true under torchrun / accelerate launch with more than one process (see nlpexp.distributed)
    OmegaConf.register_resolver("nlpexp_multiprocess", is_multiprocess, replace=True)


register_resolvers()


def compose(overrides: list[str] | None = None, config_name: str = "config") -> DictConfig:
    """Compose the run config in-process (tests, tools); `paths.output_dir` must be overridden.

    Composition errors (unknown option, misspelled key, bad override syntax) become one-line NlpexpErrors.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR)):
            return hydra_compose(config_name=config_name, overrides=overrides or [])
    except (HydraException, OmegaConfBaseException) as err:
        cause = str(err.__cause__).splitlines()[0] if err.__cause__ and str(err.__cause__) else ""
        raise NlpexpError(one_line(f"{err}\n{cause}")) from err


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


# Hydra flags after which run.py should not pre-compose (they print, sweep, or need Hydra's own handling).
_HYDRA_FLAGS = ("-m", "--multirun", "-c", "--cfg", "--help", "-h", "--hydra-help", "--info", "-i", "--resolve",
                "-p", "--package", "-sc", "--shell-completion", "-cp", "--config-path", "-cn", "--config-name",
                "-cd", "--config-dir", "--experimental-rerun")


def exit_on_bad_overrides(argv: list[str]) -> None:
    """Before Hydra runs: overrides that cannot compose (a single run's), or that the processes of a
    multi-process run cannot share, end with one `error:` line, exit 2."""
    import sys

    from nlpexp.distributed import check_overrides

    try:
        check_overrides(argv)
        if not any(arg.split("=", 1)[0] in _HYDRA_FLAGS for arg in argv):
            compose([a for a in argv if not a.startswith("hydra.") and not a.startswith("hydra/")])
    except NlpexpError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


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
        raise NlpexpError(first_line(err)) from err


def to_container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
