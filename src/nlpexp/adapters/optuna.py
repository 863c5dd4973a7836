"""Every use of Optuna beyond its documented API (tests/test_adapter_optuna.py fails when one changes). A new Optuna
is taken by bumping the pin in pyproject.toml with OPTUNA_VERSION, then making that test pass."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import TrialState

OPTUNA_VERSION = "5.0.0"


def has_heartbeat(storage: BaseStorage) -> bool:
    """Whether trials of this storage beat (an RDB storage opened with a heartbeat_interval; a journal: never); the
    `BaseHeartbeat` mixin lives in the private `optuna.storages._heartbeat`."""
    return isinstance(storage, BaseHeartbeat) and storage.get_heartbeat_interval() is not None


def trial_of(study: optuna.Study, trial_id: int) -> optuna.Trial:
    """A trial of a study that another process asked for, as `Study.optimize` builds it."""
    return optuna.Trial(study, trial_id)


def trial_state(trial: optuna.Trial) -> TrialState:
    """The trial's state as stored now (another process may have ended it)."""
    return trial.study._storage.get_trial(trial._trial_id).state


def tell(study: optuna.Study, trial: optuna.Trial | int, **result: Any) -> None:
    """study.tell; the sweeper counts trials itself, so GridSampler's `study.stop()` after its last point (which
    raises outside `Study.optimize`, once the trial is stored) is ignored."""
    try:
        study.tell(trial, **result)
    except RuntimeError as err:
        if "Study.stop" not in str(err):
            raise
