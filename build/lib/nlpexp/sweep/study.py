"""What the sweeper, the trials and the summary agree on: storage, trial bookkeeping, where a study lives."""

from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from nlpexp.errors import NlpexpError, first_line
from nlpexp.io import write_json_atomic
from nlpexp.sweep import ENV_STORAGE, ENV_STUDY, ENV_TRIAL

log = logging.getLogger(__name__)

# Trial user attributes the sweeper writes.
RUN_DIR = "run_dir"
ERROR = "error"
SKIPPED = "skipped"
# Study user attributes.
METRIC = "metric"
DEFINITION = "definition"
# The file in a sweep dir that names its study, for `python -m nlpexp.sweep summary|dashboard <sweep dir>`.
STUDY_FILE = "study.json"
SQLITE_FILE = "optuna.db"


def open_storage(url: str, heartbeat_interval: int | None = None, grace_period: int | None = None,
                 max_retry: int | None = None) -> RDBStorage:
    """An RDB storage; with a heartbeat, trials silent for grace_period are failed and queued again.

    SQLite serialises writers: several processes on one file wait up to a minute for the lock instead of
    failing at once. Creating the tables races when processes start together, so that is retried.
    """
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    for attempt in range(3):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                heartbeat: dict[str, Any] = {}
                if heartbeat_interval:
                    heartbeat = {"heartbeat_interval": heartbeat_interval, "grace_period": grace_period,
                                 "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry)}
                return RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
        except Exception as err:  # sqlalchemy errors while another process creates the same tables
            if attempt == 2:
                raise NlpexpError(f"cannot open the study storage {url}: {first_line(err)}") from err
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def sqlite_url(sweep_dir: Path) -> str:
    return f"sqlite:///{Path(sweep_dir).resolve() / SQLITE_FILE}"


def counts_toward_n_trials(trial: FrozenTrial) -> bool:
    """Finished trials: complete, pruned, or failed while running (an interrupted trial is run again)."""
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and ERROR in trial.user_attrs)


def failed(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if t.state == TrialState.FAIL and ERROR in t.user_attrs]


def value_error(value: Any, metric: str) -> str | None:
    """Why a run's return value cannot be a trial's value (not a number, or NaN/inf), or None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return f"the run returned {value!r}, not a number"
    return None if math.isfinite(number) else f"{metric} is {number}"


def tell(study: optuna.Study, trial: optuna.Trial | int, **result: Any) -> None:
    """study.tell; GridSampler calls study.stop() once its grid is done, which only works inside
    study.optimize: the trial is stored before that, and the sweeper counts trials itself."""
    try:
        study.tell(trial, **result)
    except RuntimeError as err:
        if "Study.stop" not in str(err):
            raise


def record_failure(study: optuna.Study, trial: optuna.Trial, error: str) -> None:
    trial.set_user_attr(ERROR, error)
    tell(study, trial, state=TrialState.FAIL)
    log.warning("trial %d failed: %s", trial.number, error)


def trial_id(storage: RDBStorage, study_name: str, number: int) -> int:
    """The storage's id of trial `number` (heartbeats and the storage API address trials by id)."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)


def requeue(study: optuna.Study, storage: RDBStorage, numbers: Iterable[int]) -> None:
    """Fail still-running trials that will not report (sweep interrupted) and queue their params again."""
    retry = storage.get_heartbeat_stale_trial_callback() or RetryHeartbeatStaleTrialCallback()
    for number in numbers:
        frozen = storage.get_trial(trial_id(storage, study.study_name, number))
        if frozen.state != TrialState.RUNNING:
            continue
        tell(study, number, state=TrialState.FAIL)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry(study, storage.get_trial(trial_id(storage, study.study_name, number)))
        log.warning("trial %d interrupted: queued to run again", number)


def note(trial: FrozenTrial) -> str:
    """Why a trial ended the way it did, for the summary."""
    for reason in (ERROR, SKIPPED):
        if reason in trial.user_attrs:
            return str(trial.user_attrs[reason])
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        return f"pruned at step {max(trial.intermediate_values)}"
    if trial.state == TrialState.FAIL:
        return "interrupted (run again as a new trial)"
    return ""


def trial_env(storage_url: str, study_name: str, number: int) -> dict[str, str]:
    return {ENV_STORAGE: storage_url, ENV_STUDY: study_name, ENV_TRIAL: str(number)}


def trial_from_env(pruner: optuna.pruners.BasePruner) -> optuna.Trial | None:
    """The running trial named by the environment (see nlpexp.sweep), or None outside a sweep."""
    if ENV_TRIAL not in os.environ:
        return None
    storage = open_storage(os.environ[ENV_STORAGE])
    study_name, number = os.environ[ENV_STUDY], int(os.environ[ENV_TRIAL])
    # The sampler never runs here (the sweeper samples); a random one is the cheapest to set up.
    study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner,
                              sampler=optuna.samplers.RandomSampler())
    return optuna.Trial(study, trial_id(storage, study_name, number))


def write_study_file(sweep_dir: Path, study_name: str, storage_url: str) -> None:
    write_json_atomic(Path(sweep_dir) / STUDY_FILE, {"study_name": study_name, "storage": storage_url})


def locate(target: str) -> tuple[str, str | None, Path | None]:
    """(storage URL, study name, sweep dir) of a sweep dir (its study.json) or of a storage URL."""
    if "://" in target:
        return target, None, None
    study_file = Path(target) / STUDY_FILE
    if not study_file.is_file():
        raise NlpexpError(f"{target} has no {STUDY_FILE}: give a sweep dir of hparams_search or a storage URL")
    named = json.loads(study_file.read_text())
    return named["storage"], named["study_name"], Path(target)


def load_study(target: str, study_name: str | None = None) -> tuple[optuna.Study, Path | None]:
    """A study from a sweep dir or a storage URL (the only study there unless named); also its sweep dir."""
    url, named, sweep_dir = locate(target)
    study_name = study_name or named
    storage = open_storage(url)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    if study_name is None:
        if len(names) != 1:
            raise NlpexpError(f"{url} holds {len(names)} studies ({', '.join(names)}): name one with --study")
        study_name = names[0]
    if study_name not in names:
        raise NlpexpError(f"no study '{study_name}' in {url}; it holds: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=study_name, storage=storage), sweep_dir
