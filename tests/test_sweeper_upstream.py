"""The study sweeper's adapter to hydra-optuna-sweeper's internals (upstream.py): fails loudly when they change.

Upstream's internals are not API; a new release is taken by bumping the pin in pyproject.toml and
UPSTREAM_VERSION together, then making these tests pass.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_optuna_sweeper import _impl
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hydra_plugins.nlpexp_optuna_sweeper import upstream

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_the_installed_release_is_the_one_the_adapter_was_written_for():
    pin = re.search(r'"hydra-optuna-sweeper==([^"]+)"', PYPROJECT.read_text()).group(1)
    assert upstream.upstream_version() == upstream.UPSTREAM_VERSION == pin, (
        "hydra-optuna-sweeper changed: check every use in hydra_plugins/nlpexp_optuna_sweeper/upstream.py, "
        "then bump UPSTREAM_VERSION with the pin")


@pytest.mark.parametrize("name,parameters", [
    ("__init__", ["self", "sampler", "direction", "storage", "study_name", "n_trials", "n_jobs", "max_failure_rate",
                  "custom_search_space", "params"]),
    ("_process_searchspace_config", ["self"]),
    ("_parse_sweeper_params_config", ["self"]),
    ("_get_directions", ["self"]),
    ("_to_grid_sampler_choices", ["distribution"]),
    ("_configure_trials", ["self", "trials", "search_space_distributions", "fixed_params", "fixed_overrides"]),
])
def test_the_internals_used_keep_their_signatures(name, parameters):
    assert list(inspect.signature(getattr(_impl.OptunaSweeperImpl, name)).parameters) == parameters
    assert list(inspect.signature(_impl.create_params_from_overrides).parameters) == ["arguments"]


def impl(**changes):
    settings = {"direction": "minimize", "storage": None, "study_name": None, "n_trials": 3, "n_jobs": 1,
                "max_failure_rate": 0.0, "custom_search_space": None,
                "params": OmegaConf.create({"a": "interval(0, 1)", "b": "choice(x, y)"})}
    return upstream.make_impl(**{**settings, **changes})


def test_search_space_joins_config_params_and_arguments():
    sweep_args, space, fixed, deletions = upstream.search_space(impl(), ["a=range(1, 4)", "c=5", "~d"])
    assert sweep_args == ["a=interval(0, 1)", "b=choice(x, y)", "a=range(1, 4)", "c=5", "~d"]
    assert space == {"a": IntDistribution(1, 3), "b": CategoricalDistribution(["x", "y"])}  # the command line wins
    assert fixed == {"c": "5"} and deletions == ["~d"]
    with pytest.raises(AssertionError):  # upstream's own check of max_failure_rate
        impl(max_failure_rate=1.5)


def test_directions_and_grid_choices():
    assert upstream.directions(impl()) == ["minimize"]
    assert upstream.directions(impl(direction=["maximize", "minimize"])) == ["maximize", "minimize"]
    assert upstream.grid_choices(IntDistribution(1, 5, step=2)) == [1, 3, 5]
    assert upstream.grid_choices(CategoricalDistribution(["x", "y"])) == ["x", "y"]
    assert upstream.grid_choices(FloatDistribution(0.0, 1.0, step=0.5)) == [0.0, 0.5, 1.0]


def test_configure_trials_draws_params_and_stores_fixed_ones():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trials = [study.ask(), study.ask()]
    _, space, fixed, deletions = upstream.search_space(impl(), ["c=5", "~d"])
    overrides = upstream.configure_trials(impl(), OmegaConf.create({}), trials, space, fixed, deletions)
    for trial, job in zip(trials, overrides, strict=True):
        assert job == [f"a={trial.params['a']}", f"b={trial.params['b']}", "c=5", "~d"]
        assert study.trials[trial.number].user_attrs == {"c": "5"}


def test_job_outcome_reads_a_failed_job_without_raising():
    failed, error = JobReturn(status=JobStatus.FAILED), RuntimeError("boom")
    failed.return_value = error
    assert upstream.job_outcome(failed) == (None, error, None)
    ran = OmegaConf.create({"hydra": {"runtime": {"output_dir": "/r"}}})
    done = JobReturn(status=JobStatus.COMPLETED, hydra_cfg=ran)
    done.return_value = 1.0
    assert upstream.job_outcome(done) == (1.0, None, "/r")
