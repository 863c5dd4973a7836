"""The trial's side of a sweep: report the validation metric at every evaluation, stop when the pruner says so."""

from __future__ import annotations

import logging
import math

import optuna
from omegaconf import DictConfig
from transformers import TrainerCallback

from nlpexp import NlpexpError
from nlpexp.adapters import trial_of, trial_state
from nlpexp.sweep.storage import open_storage
from nlpexp.sweep.study import trial_id

log = logging.getLogger(__name__)
PRUNERS = ("optuna.pruners.*",)  # what hydra.sweeper.pruner may build


def trial_reporters(cfg: DictConfig, storage_url: str, study_name: str, number: int) -> list[TrainerCallback]:
    """[TrialReporter] of trial `number` (hydra_plugins.nlpexp_optuna_sweeper.trial_callbacks: a sweep's trials),
    whose sweep's pruner (`hydra.sweeper.pruner`) says when to stop."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    node = HydraConfig.get().sweeper.get("pruner") if HydraConfig.initialized() else None
    pruner = instantiate(node, _execution_whitelist_=PRUNERS) if node is not None else optuna.pruners.NopPruner()
    trial = open_trial(storage_url, study_name, number, pruner)
    if cfg.optimized_metric.partition("/")[0] != "val":
        if not isinstance(pruner, optuna.pruners.NopPruner):
            raise NlpexpError(f"pruning needs a validation metric to report, but optimized_metric is "
                              f"'{cfg.optimized_metric}'; optimise a 'val/...' metric or use hydra/sweeper/pruner=none")
        return []
    return [TrialReporter(trial, cfg.optimized_metric)]


def open_trial(storage_url: str, study_name: str, number: int, pruner=None) -> optuna.Trial:
    """The running trial `number` of the study, to report to."""
    storage = open_storage(storage_url)
    # The pruner decides should_prune(); no sampler runs here (the sweeper samples): a random one is the cheapest.
    study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner,
                              sampler=optuna.samplers.RandomSampler())
    return trial_of(study, trial_id(storage, study_name, number))


def check_trial_running(trial: optuna.Trial) -> None:
    """Refuse to go on with a trial that its study no longer counts as running: its sweep stopped, failed it and
    queued its params again; what this run finds must not be told as its."""
    state = trial_state(trial)
    if state != optuna.trial.TrialState.RUNNING:
        raise NlpexpError(f"trial {trial.number} is already {state.name} in its study (its sweep stopped and gave "
                          f"it up); this run's result is not the trial's")


class TrialReporter(TrainerCallback):
    """Reports `metric` (a `val/...` name) to the trial at each evaluation; raises TrialPruned to stop.

    Raising (rather than asking the trainer to stop) ends the run at once: no final evaluation, no saved
    model for a trial that is being given up. The sweeper stores it as PRUNED with its last reported value.
    """

    def __init__(self, trial: optuna.Trial, metric: str):
        self.trial = trial
        self.metric = metric
        self.log_key = "eval_" + metric.partition("/")[2]

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        metrics = metrics or {}
        if self.log_key not in metrics:
            raise NlpexpError(f"optimized_metric '{self.metric}' is not among the evaluation metrics: "
                              f"{', '.join(sorted(k for k in metrics if k.startswith('eval_')))}")
        value = float(metrics[self.log_key])
        check_trial_running(self.trial)  # never tell a trial that the study has already ended
        if not math.isfinite(value):
            return  # nothing to compare; the final value decides (a NaN run fails)
        self.trial.report(value, state.global_step)
        # At the last evaluation the training is spent: pruning there saves no step and only throws the result away
        # (successive halving's second rung falls on the last step when max_steps = min_resource x reduction_factor).
        if state.global_step < state.max_steps and self.trial.should_prune():
            message = f"trial {self.trial.number} pruned at step {state.global_step} ({self.metric}={value:.4f})"
            log.info(message)
            raise optuna.TrialPruned(message)
