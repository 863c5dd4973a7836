"""The seeds' workflows: the summariser comparison, serial sweeps, the baseline preset, the best model's path."""

from __future__ import annotations

import json
import subprocess

import pytest
from optuna.trial import TrialState

from nlpexp.config import CONFIG_DIR, PROJECT_ROOT, compose
from nlpexp.sweep.study import ERROR, load_study
from tests.test_sweep import run_sweep, study_dir

FAST_SUMMARIES = ["generation.num_beams=1", "generation.max_new_tokens=8", "task.max_target_length=16"]


@pytest.mark.slow
def test_summariser_comparison_ranks_what_runs_and_says_in_one_line_what_is_missing(tmp_path):
    assert run_sweep(tmp_path, "summarization_models", "model=choice(tiny_t5, bart)", *FAST_SUMMARIES) == 0
    study, _ = load_study(str(study_dir(tmp_path)))
    states = {t.params["model"]: t for t in study.get_trials()}
    assert states["tiny_t5"].state == TrialState.COMPLETE and states["tiny_t5"].value is not None
    failed = states["bart"]
    assert failed.state == TrialState.FAIL
    error = failed.user_attrs[ERROR]
    assert "\n" not in error and "model 'bart'" in error and "Hub is unreachable" in error


def test_the_reference_presets_compose_to_the_seeds_settings():
    baseline = compose(["paths.output_dir=x", "experiment=summarization_reference_baseline"])
    trainer, optimizer, scheduler = baseline.trainer, baseline.optimizer, baseline.scheduler
    assert (trainer.max_epochs, trainer.max_steps, trainer.batch_size, trainer.save_total_limit) == (20, -1, 50, 3)
    assert (optimizer.lr, scheduler.warmup_steps, scheduler.warmup_ratio) == (1e-5, 500, 0.0)
    assert baseline.task._target_.endswith("SummarizationTask")
    assert _sweeper("summarization_models").params.model == "choice(bart, kobart, t5, mt5, kogpt2)"
    ablation = _sweeper("summarization_ablation")
    assert ablation.sampler._target_.endswith("GridSampler") and len(ablation.params) == 4


def _sweeper(preset: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR)):
        return hydra_compose("config", [f"hparams_search={preset}", "paths.output_dir=x"],
                             return_hydra_config=True).hydra.sweeper


def test_make_sweeps_runs_several_presets_one_after_another():
    done = subprocess.run(["make", "-n", "sweeps", "PRESETS=sbert_nli model_comparison", "ARGS=debug=smoke"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    runs = [line for line in done.stdout.splitlines() if "run.py -m" in line]
    assert len(runs) == 1 and "for preset in sbert_nli model_comparison" in runs[0]


def _finished_run(folder, value: float):
    (folder / "best_model").mkdir(parents=True)
    (folder / "best_model" / "weights").write_text(str(value))
    (folder / "metrics.json").write_text(json.dumps({"val/x": value}))
    (folder / "config.yaml").write_text("optimized_metric: val/x\n")
    return folder


def test_the_best_model_has_a_path_that_stays_put(tmp_path):
    from nlpexp import registry

    root = tmp_path / "models"
    for i, value in enumerate((0.5, 0.9, 0.7)):
        registry.register(_finished_run(tmp_path / f"run{i}", value), "study", root)
        best = root / "study" / "best" / "model" / "weights"
        assert best.read_text() == str(max((0.5, 0.9, 0.7)[: i + 1]))
    assert registry.versions("study", root) == [1, 2, 3]  # the link is no version
    assert registry.resolve("registry:study@best", root).resolve() == (root / "study" / "best" / "model").resolve()
