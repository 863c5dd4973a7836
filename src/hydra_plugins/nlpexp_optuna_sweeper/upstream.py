"""Every use of hydra-optuna-sweeper's internals, in one place: the study sweeper calls the official code rather
than a copy: the search-space grammar (`create_params_from_overrides`), the trial -> overrides mapping with fixed
params and `custom_search_space` (`OptunaSweeperImpl._configure_trials`), the grid's choices and the directions.
None is public API: pyproject.toml pins hydra-optuna-sweeper exactly, and tests/test_sweeper_upstream.py fails on
any change here; a new release is taken by bumping the pin with UPSTREAM_VERSION and making that test pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hydra.core.utils import JobReturn
from omegaconf import DictConfig

if TYPE_CHECKING:  # (Hydra imports every plugin module at start-up: optuna only once a sweep needs it)
    from hydra_plugins.hydra_optuna_sweeper import _impl
    from optuna.distributions import BaseDistribution
    from optuna.trial import Trial

UPSTREAM_VERSION = "1.4.0rc3"  # the release whose internals this module was written against
SAMPLER_WHITELIST = ("hydra_plugins.hydra_optuna_sweeper.*", "optuna.samplers.*")
# The official sweeper's keys of hydra.sweeper (StudySweeperConf adds the study's)
KEYS = ("direction", "storage", "study_name", "n_trials", "n_jobs", "max_failure_rate", "custom_search_space", "params")


def upstream_version() -> str:
    from importlib.metadata import version

    return version("hydra-optuna-sweeper")


def make_impl(**settings: Any) -> _impl.OptunaSweeperImpl:
    """The official sweeper's state from its config keys (checks max_failure_rate, resolves custom_search_space),
    without its sampler: the study sweeper seeds its own (study.sampler_seed)."""
    from hydra_plugins.hydra_optuna_sweeper import _impl

    return _impl.OptunaSweeperImpl(sampler=None, **settings)


def search_space(impl: _impl.OptunaSweeperImpl, arguments: Sequence[str]) -> tuple[
        list[str], dict[str, BaseDistribution], dict[str, Any], list[str]]:
    """(sweep arguments, search space, fixed params, fixed overrides such as `~key`) of `params` in config
    followed by the command line's arguments, parsed by the official grammar; fixed params leave the space."""
    impl._process_searchspace_config()
    sweep_args = [*impl._parse_sweeper_params_config(), *arguments]
    return sweep_args, *parse(sweep_args)


def parse(arguments: Sequence[str]) -> tuple[dict[str, BaseDistribution], dict[str, Any], list[str]]:
    """(search space, fixed params, fixed overrides) of sweep arguments; a later argument for a key wins."""
    from hydra_plugins.hydra_optuna_sweeper import _impl

    space, fixed, fixed_overrides = _impl.create_params_from_overrides(list(arguments))
    for name in fixed:
        space.pop(name, None)
    return space, fixed, fixed_overrides


def directions(impl: _impl.OptunaSweeperImpl) -> list[str]:
    """["minimize"] or ["maximize", "minimize", ...]: `direction` as one value or a list."""
    return [str(d).lower() for d in impl._get_directions()]


def grid_choices(distribution: BaseDistribution) -> list[Any]:
    from hydra_plugins.hydra_optuna_sweeper import _impl

    return list(_impl.OptunaSweeperImpl._to_grid_sampler_choices(distribution))


def configure_trials(impl: _impl.OptunaSweeperImpl, config: DictConfig, trials: list[Trial],
                     space: dict[str, BaseDistribution], fixed: dict[str, Any],
                     fixed_overrides: list[str]) -> list[list[str]]:
    """Draw each trial's params (and custom_search_space's) and turn them into a job's overrides."""
    impl.config = config  # custom_search_space is called with the sweep's config
    return [list(overrides) for overrides in impl._configure_trials(trials, space, fixed, fixed_overrides)]


def job_outcome(job: JobReturn) -> tuple[Any, Exception | None, str | None]:
    """(what the job returned, or the exception it raised, where it ran), without Hydra's extra stderr line."""
    from nlpexp.adapters import job_error

    run_dir = str(job.hydra_cfg.hydra.runtime.output_dir) if job.hydra_cfg is not None else None  # (an app's subdir)
    error = job_error(job)
    return (None, error, run_dir) if error is not None else (job.return_value, None, run_dir)
