"""The official Optuna sweeper's behaviours, with `hydra/sweeper=study`, on a tiny app of our own.

tests/sweeper_app knows nothing of nlpexp (no optimized_metric, no paths): the plugin must work in any Hydra
app. Each sweep runs the app's `-m` command line in this process (a trivial objective: about a second).
"""

from __future__ import annotations

import shlex

import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from nlpexp.sweep.study import RUN_DIR, load_study
from tests.sweeper_app.runner import APP, sweep


def study_of(sweep_dir):
    return load_study(str(sweep_dir))[0]


def results(sweep_dir) -> dict:
    return yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())


def test_search_space_grammar_and_fixed_and_deletion_overrides(tmp_path):
    assert sweep(f"hydra.sweep.dir={tmp_path}", "hydra.sweeper.n_trials=3", "x=range(-2,3)",
                 "y=tag(log, interval(0.1, 10))", "+z2=choice(a, b)", "max_dz=int(interval(1, 4))",
                 "label=fixed", "~error") == 0
    trials = study_of(tmp_path).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert trials[0].distributions == {"x": IntDistribution(-2, 2), "y": FloatDistribution(0.1, 10, log=True),
                                       "+z2": CategoricalDistribution(["a", "b"]), "max_dz": IntDistribution(1, 4)}
    for t in trials:  # fixed params are the trials' user attributes, as upstream stores them
        assert t.user_attrs["label"] == "fixed" and t.value == pytest.approx(t.params["x"] ** 2 + t.params["y"] ** 2)
        assert (tmp_path / str(t.number) / ".hydra").is_dir()
    # The rerun command: the program that swept, its fixed overrides, the params and the deletion override.
    best = yaml.safe_load((tmp_path / "best.yaml").read_text())
    words = shlex.split(best["rerun"])
    assert words[:3] == ["python", str(APP), "label=fixed"] and words[-1] == "~error"
    assert f"x={best['best_params']['x']}" in words


def test_params_in_config_and_the_command_line_replacing_one(tmp_path):
    assert sweep(f"hydra.sweep.dir={tmp_path}", "hydra.sweeper.n_trials=3", "x=choice(0, 3)") == 0
    trials = study_of(tmp_path).get_trials()
    assert trials[0].distributions == {"x": CategoricalDistribution([0, 3]), "y": FloatDistribution(-5, 5)}
    assert all(t.params["x"] in (0, 3) and -5 <= t.params["y"] <= 5 for t in trials)


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes", "nsgaii", "nsgaiii", "gp", "qmc", "grid"])
def test_every_sampler(tmp_path, sampler):
    if sampler == "cmaes":
        pytest.importorskip("cmaes", reason="optuna's CmaEsSampler needs the cmaes package")
    space = ["x=choice(-1, 0, 2)", "y=range(-1, 2)"] if sampler == "grid" else []
    assert sweep(f"hydra.sweep.dir={tmp_path}", f"hydra/sweeper/sampler={sampler}", "hydra.sweeper.n_trials=3",
                 *space) == 0
    trials = study_of(tmp_path).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert len({tuple(t.params.values()) for t in trials}) == 3


def test_grid_runs_each_point_once_and_caps_n_trials(tmp_path):
    assert sweep(f"hydra.sweep.dir={tmp_path}", "hydra/sweeper/sampler=grid", "hydra.sweeper.n_trials=10",
                 "x=choice(-1, 1)", "y=range(-1.0, 1.0, step=1)") == 0
    trials = study_of(tmp_path).get_trials()
    assert sorted((t.params["x"], t.params["y"]) for t in trials) == [(-1, -1.0), (-1, 0.0), (1, -1.0), (1, 0.0)]
    assert results(tmp_path)["best_value"] == 1


def test_custom_search_space(tmp_path):
    assert sweep(f"hydra.sweep.dir={tmp_path}", "hydra.sweeper.n_trials=3", "max_dz=0.3",
                 "hydra.sweeper.custom_search_space=tests.sweeper_app.app.configure") == 0
    for t in study_of(tmp_path).get_trials():
        assert abs(t.params["z"] - t.params["x"]) <= 0.3 and 0 <= t.params["+w"] <= 1
        assert t.value == pytest.approx(t.params["x"] ** 2 + t.params["y"] ** 2)
    assert set(results(tmp_path)["best_params"]) == {"x", "y", "z", "+w"}


def test_optimization_results_yaml_is_the_official_file(tmp_path):
    assert sweep(f"hydra.sweep.dir={tmp_path}") == 0
    study = study_of(tmp_path)
    assert results(tmp_path) == {"name": "optuna", "best_params": study.best_params, "best_value": study.best_value}


def test_multi_objective_pareto_front(tmp_path):
    assert sweep(f"hydra.sweep.dir={tmp_path}", "objectives=2", "hydra.sweeper.direction=[minimize,minimize]",
                 "hydra.sweeper.n_trials=6", "hydra/sweeper/sampler=random") == 0
    study = study_of(tmp_path)
    front = {t.number for t in study.best_trials}
    solutions = results(tmp_path)["solutions"]
    assert len(solutions) == len(front) > 0
    for a in solutions:
        assert not any(all(x <= y for x, y in zip(b["values"], a["values"], strict=True)) and b != a
                       and b["values"] != a["values"] for b in solutions), "a solution dominated by another"
    best = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert {p["trial"] for p in best["pareto_front"]} == front and best["directions"] == ["minimize", "minimize"]
    assert set(best["pareto_front"][0]["values"]) == {"value_0", "value_1"}
    assert "| value_0 | value_1 |" in (tmp_path / "trials.md").read_text()


def test_promoting_one_of_several_objectives_needs_a_rule(tmp_path, capfd):
    from nlpexp.sweep.summary import best_trial

    two = ("objectives=2", "hydra.sweeper.direction=[minimize,maximize]", "hydra.sweeper.n_trials=4",
           "hydra.sweeper.metric_names=[near_origin,far_from_5]")
    assert sweep(f"hydra.sweep.dir={tmp_path / 'norule'}", *two, "hydra.sweeper.promote_best=true") == 2
    errors = [line for line in capfd.readouterr().out.splitlines() if "error:" in line]
    assert len(errors) == 1 and "hydra.sweeper.promote_objective" in errors[0]
    assert not (tmp_path / "norule" / "optuna.db").exists()  # refused before any trial

    assert sweep(f"hydra.sweep.dir={tmp_path / 'rule'}", *two, "hydra.sweeper.promote_best=true",
                 "hydra.sweeper.promote_objective=far_from_5", f"hydra.sweeper.registry_dir={tmp_path / 'reg'}") == 0
    study = study_of(tmp_path / "rule")
    chosen = best_trial(study, 1)
    assert chosen in study.best_trials and chosen.values[1] == max(t.values[1] for t in study.best_trials)


def test_sweep_dir_and_subdir_from_the_app_config(tmp_path):
    assert sweep("--config-name=with_dirs", f"root={tmp_path}", "hydra.sweeper.n_trials=2") == 0
    sweep_dir = tmp_path / "from_config"
    assert (sweep_dir / "optimization_results.yaml").is_file()
    for t in study_of(sweep_dir).get_trials():
        assert t.user_attrs[RUN_DIR] == str(sweep_dir / f"trial_{t.number}")
        assert (sweep_dir / f"trial_{t.number}" / ".hydra" / "config.yaml").is_file()


def test_n_jobs_asks_a_batch_before_launching_it(tmp_path):
    assert sweep(f"hydra.sweep.dir={tmp_path}", "hydra.sweeper.n_jobs=3", "hydra.sweeper.n_trials=5") == 0
    trials = study_of(tmp_path).get_trials()
    assert len(trials) == 5
    first, second = trials[:3], trials[3:]
    assert max(t.datetime_start for t in first) < min(t.datetime_complete for t in first)  # asked together
    assert min(t.datetime_start for t in second) > max(t.datetime_complete for t in first)  # the next batch


def test_a_worker_pool_launcher_gives_each_free_worker_the_next_trial(tmp_path):
    """nlpexp's, not upstream's: with joblib's pool, a worker whose trial ended takes the next one at once, instead of
    idling until the rest of its batch has ended (a pruned trial next to a full one)."""
    assert sweep(f"hydra.sweep.dir={tmp_path}", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                 "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=4", "slow_first=true") == 0
    trials = study_of(tmp_path).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert max(t.datetime_start for t in trials[1:]) < trials[0].datetime_complete  # all while trial 0 ran
    assert all((tmp_path / str(t.number) / ".hydra").is_dir() for t in trials)  # each in its own job dir


def test_max_failure_rate_is_per_batch_and_reraises(tmp_path, capfd):
    failing = ("error=true", "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=4")
    assert sweep(f"hydra.sweep.dir={tmp_path / 'strict'}", *failing, "hydra.sweeper.max_failure_rate=0.5") == 1
    assert "RuntimeError: cfg.error is True" in capfd.readouterr().err
    trials = study_of(tmp_path / "strict").get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * 2  # the first batch, recorded, then the error

    assert sweep(f"hydra.sweep.dir={tmp_path / 'lenient'}", *failing, "hydra.sweeper.max_failure_rate=1.0") == 0
    assert "RuntimeError: cfg.error is True" not in capfd.readouterr().err
    assert [t.state for t in study_of(tmp_path / "lenient").get_trials()] == [TrialState.FAIL] * 4


def test_failure_budget_is_study_wide_and_its_own_key(tmp_path, capfd):
    assert sweep(f"hydra.sweep.dir={tmp_path}", "error=true", "hydra.sweeper.n_trials=4",
                 "hydra.sweeper.max_failure_rate=1.0", "hydra.sweeper.failure_budget=0.5") == 2
    errors = [line for line in capfd.readouterr().out.splitlines() if "error:" in line]
    assert len(errors) == 1 and "3 of 4 trials failed (failure_budget=0.5)" in errors[0]
    assert len(study_of(tmp_path).get_trials()) == 3


def test_a_fresh_study_draws_what_the_official_sweeper_draws(tmp_path):
    common = ("hydra.sweeper.n_trials=4", "hydra.sweeper.sampler.seed=7", "hydra.sweeper.study_name=same")
    assert sweep(f"hydra.sweep.dir={tmp_path / 'study'}", *common) == 0
    assert sweep("hydra/sweeper=optuna", f"hydra.sweep.dir={tmp_path / 'official'}", "hydra.sweeper.n_jobs=1",
                 f"hydra.sweeper.storage=sqlite:///{tmp_path / 'official.db'}", *common) == 0
    ours = [t.params for t in study_of(tmp_path / "study").get_trials()]
    official = load_study(f"sqlite:///{tmp_path / 'official.db'}")[0].get_trials()
    assert ours == [t.params for t in official]
    assert results(tmp_path / "study") == results(tmp_path / "official")


@pytest.mark.parametrize("overrides,message", [
    (("hydra.sweeper.direction=[minimize,minimize]", "hydra.sweeper.metric_names=[only_one]"),
     "metric_names names 1 objective(s) (only_one) but hydra.sweeper.direction has 2"),
    (("hydra.sweeper.direction=[minimize,minimize]", "hydra.sweeper.promote_best=true",
      "hydra.sweeper.promote_objective=nope"), "promote_objective=nope is not an objective: value_0, value_1"),
    (("hydra.sweeper.n_jobs=0",), "hydra.sweeper.n_jobs must be >= 1"),
    (("xx=interval(0, 1)",), "search space key(s) not in the config: xx"),
])
def test_a_sweep_that_cannot_be_right_is_refused_before_any_trial(tmp_path, capfd, overrides, message):
    assert sweep(f"hydra.sweep.dir={tmp_path}", *overrides) == 2
    errors = [line for line in capfd.readouterr().out.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], errors
    assert not (tmp_path / "optuna.db").exists()


def test_a_run_returning_the_wrong_number_of_values_fails_its_trial(tmp_path):
    assert sweep(f"hydra.sweep.dir={tmp_path}", "objectives=2", "hydra.sweeper.n_trials=2",
                 "hydra.sweeper.max_failure_rate=1.0") == 0  # two values for one objective
    trials = study_of(tmp_path).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * 2
    assert all(t.user_attrs["error"].endswith(", not a number") for t in trials)
    assert not (tmp_path / "optimization_results.yaml").exists()  # no complete trial, no best
