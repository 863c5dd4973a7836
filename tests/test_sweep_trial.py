"""The sweep's pieces in-process: preset configs, the trial <-> study contract, the trainer callback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import optuna
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from hydra_plugins.nlpexp_optuna_sweeper import ENV_STORAGE, ENV_STUDY, ENV_TRIAL, trial_callbacks, upstream
from nlpexp.config import CONFIG_DIR, instantiate
from nlpexp.pipeline import run
from nlpexp.sweep.reporter import TrialReporter
from nlpexp.sweep.storage import open_storage, sqlite_url

PRESETS = sorted(p.stem for p in (CONFIG_DIR / "hparams_search").glob("*.yaml"))


def hydra_config(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR)):
        return compose("config", overrides=["paths.output_dir=/tmp/unused", *overrides], return_hydra_config=True)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_defines_a_study(preset):
    cfg = hydra_config(f"hparams_search={preset}")
    text = (CONFIG_DIR / "hparams_search" / f"{preset}.yaml").read_text()
    assert text.startswith("# @package _global_")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.nlpexp_optuna_sweeper.sweeper.StudySweeper"
    assert cfg.hydra.runtime.choices["hydra/sweeper"] == "nlpexp"
    assert list(sweeper.metric_names) == [cfg.optimized_metric] and sweeper.studies_dir.endswith("/multirun")
    assert sweeper.direction in ("maximize", "minimize") and sweeper.n_trials > 0
    assert sweeper.sampler.seed == cfg.seed  # reproducible
    space, fixed, _ = upstream.parse([f"{k}={v}" for k, v in sweeper.params.items()])
    assert space and not fixed, "every preset param is a search dimension"
    for name in space:  # every swept key exists in the composed config (or is a config group)
        assert OmegaConf.select(cfg, name) is not None or (CONFIG_DIR / name).is_dir(), name


@pytest.mark.parametrize("pruner,expected", [("none", optuna.pruners.NopPruner),
                                             ("median", optuna.pruners.MedianPruner),
                                             ("successive_halving", optuna.pruners.SuccessiveHalvingPruner),
                                             ("hyperband", optuna.pruners.HyperbandPruner)])
def test_pruner_setting(pruner, expected):
    cfg = hydra_config("hparams_search=sbert_nli", f"hydra/sweeper/pruner={pruner}")
    assert isinstance(instantiate(cfg.hydra.sweeper.pruner), expected)


@pytest.mark.parametrize("preset", PRESETS)
def test_the_tpe_presets_halve_at_the_first_evaluation_and_the_others_never_prune(preset):
    """A TPE preset that scores every trainer.eval_every_steps stops poor trials at their first evaluation (its
    first rung, whatever the command line makes it); a grid (an ablation wants every cell), a decoding sweep and
    a summarization sweep (scored once per epoch: nothing to halve on) run each trial to its end."""
    cfg = hydra_config(f"hparams_search={preset}", "trainer.eval_every_steps=30")
    pruner = instantiate(cfg.hydra.sweeper.pruner)
    if preset in ("sbert_nli", "embedding", "classification"):
        assert isinstance(pruner, optuna.pruners.SuccessiveHalvingPruner)
        assert cfg.hydra.sweeper.pruner.min_resource == 30 and cfg.hydra.sweeper.pruner.reduction_factor == 4
    else:
        assert isinstance(pruner, optuna.pruners.NopPruner)


def test_halving_without_a_step_interval_takes_optunas_automatic_first_rung():
    """trainer.eval_every_steps=null (scored once per epoch): the first rung is optuna's own estimate."""
    cfg = hydra_config("hparams_search=sbert_nli", "trainer.eval_every_steps=null")
    pruner = instantiate(cfg.hydra.sweeper.pruner)
    assert isinstance(pruner, optuna.pruners.SuccessiveHalvingPruner) and cfg.hydra.sweeper.pruner.min_resource is None


@pytest.mark.parametrize("sampler,expected", [("tpe", "TPESampler"), ("random", "RandomSampler"),
                                              ("grid", "GridSampler")])
def test_sampler_setting(sampler, expected):
    cfg = hydra_config("hparams_search=sbert_nli", f"hydra/sweeper/sampler={sampler}")
    assert cfg.hydra.sweeper.sampler._target_ == f"optuna.samplers.{expected}"


def test_launcher_presets_compose():
    parallel = hydra_config("hparams_search=sbert_nli", "hydra/launcher=parallel", "hydra.launcher.n_jobs=3")
    assert parallel.hydra.launcher._target_.endswith("JoblibLauncher")
    assert parallel.hydra.sweeper.n_jobs == 3  # the sweep launches as many trials as there are workers
    slurm = hydra_config("hparams_search=sbert_nli", "hydra/launcher=slurm", "hydra.sweeper.n_jobs=8")
    assert slurm.hydra.launcher._target_.endswith("SlurmLauncher")
    assert slurm.hydra.launcher.array_parallelism == 8
    assert hydra_config("hparams_search=sbert_nli").hydra.sweeper.n_jobs == 1  # basic launcher: one at a time


def test_wandb_runs_of_a_study_share_its_group(compose_run, monkeypatch):
    assert compose_run("logger=wandb").logger.wandb.group is None
    monkeypatch.setenv(ENV_STUDY, "sbert_nli-1234abcd")
    assert compose_run("logger=wandb").logger.wandb.group == "sbert_nli-1234abcd"


def test_outside_a_sweep_a_run_gets_no_trial_callback(compose_run):
    assert trial_callbacks(compose_run()) == []


def test_outside_a_sweep_a_run_imports_no_sweep_code():
    """The trial hooks a run calls (pipeline, observers) import nlpexp.sweep (and optuna) in a sweep's trials only."""
    code = ("import sys; from hydra_plugins.nlpexp_optuna_sweeper import check_trial_owned, run_in_progress\n"
            "import nlpexp.pipeline\nwith run_in_progress(): check_trial_owned()\n"
            "print(sorted(m for m in sys.modules if m.startswith('nlpexp.sweep') or m == 'optuna'))")
    env = {k: v for k, v in os.environ.items() if k not in (ENV_STORAGE, ENV_STUDY, ENV_TRIAL)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.fixture
def study_trial(tmp_path, monkeypatch):
    """A running trial of a sqlite study, announced to the run the way the sweeper does it."""
    url = sqlite_url(tmp_path)
    study = optuna.create_study(study_name="s", storage=open_storage(url), direction="maximize")
    trial = study.ask()
    for key, value in {ENV_STORAGE: url, ENV_STUDY: "s", ENV_TRIAL: str(trial.number)}.items():
        monkeypatch.setenv(key, value)
    return study, trial


def test_a_trial_reports_its_metric_at_every_evaluation(compose_run, study_trial):
    study, trial = study_trial
    metrics = run(compose_run("model=tiny_bert", "debug=smoke", "logger=none"))
    reported = study.trials[trial.number].intermediate_values
    assert sorted(reported) == [2, 4]  # debug=smoke evaluates every 2 of 4 steps
    assert metrics["val/spearman_cosine"] == pytest.approx(max(reported.values()))  # the best checkpoint's


def test_the_reporter_stops_a_trial_the_pruner_gives_up(tmp_path):
    study = optuna.create_study(storage=open_storage(sqlite_url(tmp_path)), direction="maximize",
                                pruner=optuna.pruners.ThresholdPruner(lower=0.5))
    reporter = TrialReporter(study.ask(), "val/spearman_cosine")
    state = type("State", (), {"global_step": 2, "max_steps": 6})()
    reporter.on_evaluate(None, state, None, metrics={"eval_spearman_cosine": 0.7})
    state.global_step = 4
    with pytest.raises(optuna.TrialPruned, match="pruned at step 4"):
        reporter.on_evaluate(None, state, None, metrics={"eval_spearman_cosine": 0.3})
    assert study.trials[0].intermediate_values == {2: 0.7, 4: 0.3}


def test_a_trial_is_never_pruned_at_its_last_evaluation(tmp_path):
    # Its training is spent by then: stopping it would only throw its result away.
    study = optuna.create_study(storage=open_storage(sqlite_url(tmp_path)), direction="maximize",
                                pruner=optuna.pruners.ThresholdPruner(lower=0.5))
    reporter = TrialReporter(study.ask(), "val/spearman_cosine")
    reporter.on_evaluate(None, type("State", (), {"global_step": 6, "max_steps": 6})(), None,
                         metrics={"eval_spearman_cosine": 0.3})
    assert study.trials[0].intermediate_values == {6: 0.3}
    assert study.trials[0].state == optuna.trial.TrialState.RUNNING  # the run goes on to finish it


def test_the_reporter_names_a_metric_the_evaluation_lacks(tmp_path):
    from nlpexp import NlpexpError

    study = optuna.create_study(storage=open_storage(sqlite_url(tmp_path)))
    reporter = TrialReporter(study.ask(), "val/accuracy")
    with pytest.raises(NlpexpError, match="val/accuracy.*eval_spearman_cosine"):
        reporter.on_evaluate(None, type("State", (), {"global_step": 2})(), None,
                             metrics={"eval_spearman_cosine": 0.1})


def test_the_study_of_a_sweep_dir_is_found_from_its_study_file(tmp_path):
    from nlpexp.sweep.study import load_study, write_study_file

    url = sqlite_url(tmp_path)
    optuna.create_study(study_name="one", storage=open_storage(url))
    write_study_file(tmp_path, "one", url)
    assert json.loads((tmp_path / "study.json").read_text())["study_name"] == "one"
    study, sweep_dir = load_study(str(tmp_path))
    assert study.study_name == "one" and sweep_dir == tmp_path


def test_a_run_value_that_is_not_finite_numbers_fails_the_trial():
    from nlpexp.sweep.study import trial_values

    one, two = ["val/accuracy"], ["a", "b"]
    assert trial_values(0.5, one) == ([0.5], None)
    assert trial_values(float("nan"), one) == ([], "val/accuracy is nan")
    assert trial_values(None, one) == ([], "the run returned None, not a number")
    assert trial_values((1, 2.5), two) == ([1.0, 2.5], None)
    assert trial_values([1, float("inf")], two) == ([], "b is inf")
    assert trial_values(0.5, two) == ([], "the run returned 0.5, not 2 values (a list or tuple)")
    assert trial_values((1, 2, 3), two)[1] == "the run returned (1, 2, 3), not 2 values (a list or tuple)"
    assert trial_values(("x", 1), two)[1] == "the run returned ('x', 1), not numbers"
