"""What the sweeper, the trials and the summary agree on: trial bookkeeping, where a study lives (its storage:
nlpexp.sweep.storage)."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from nlpexp.errors import NlpexpError
from nlpexp.io import write_json_atomic
from nlpexp.redaction import redact_text
from nlpexp.sweep import ENV_STORAGE, ENV_STUDY, ENV_TRIAL
from nlpexp.sweep.storage import has_heartbeat, open_storage

log = logging.getLogger(__name__)

# Trial user attributes the sweeper writes.
RUN_DIR = "run_dir"
ERROR = "error"
SKIPPED = "skipped"
# Study user attributes.
METRIC = "metric"  # (studies before metric_names; now study.metric_names)
DEFINITION = "definition"
PROGRAM = "program"  # sys.argv[0] of the sweep and its deletion overrides (~key): the rerun command
# The file in a sweep dir that names its study, for `python -m nlpexp.sweep summary|dashboard <sweep dir>`.
STUDY_FILE = "study.json"


def default_study_name(preset: str, definition: dict, storage: str | None, sweep_dir: str | None,
                       studies_dir: Path) -> str:
    """<preset>-<hash of the definition and of where the study is stored>: the same search on another storage
    (or sweep dir, or studies dir) is another study, and promotes into another registry model."""
    where = redact_text(storage) if storage else str(Path(sweep_dir or studies_dir).resolve())  # no password
    text = json.dumps({**definition, "stored_in": where}, sort_keys=True)
    return f"{preset}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def counts_toward_n_trials(trial: FrozenTrial) -> bool:
    """Finished trials: complete, pruned, or failed while running (an interrupted trial is run again)."""
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and ERROR in trial.user_attrs)


def failed(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if t.state == TrialState.FAIL and ERROR in t.user_attrs]


def trial_values(value: Any, metrics: list[str]) -> tuple[list[float], str | None]:
    """(the values, None) of what a run returned: one number, or one per objective (a list or tuple);
    or ([], why not): not numbers, another count than the objectives, NaN or inf."""
    several = len(metrics) > 1
    items = list(value) if several and isinstance(value, list | tuple) else [value]
    if len(items) != len(metrics):
        expected = f"{len(metrics)} values (a list or tuple)" if several else "one number"
        return [], f"the run returned {value!r}, not {expected}"
    try:
        numbers = [float(item) for item in items]
    except (TypeError, ValueError):
        return [], f"the run returned {value!r}, not {'numbers' if several else 'a number'}"
    bad = [f"{name} is {number}" for name, number in zip(metrics, numbers, strict=True) if not math.isfinite(number)]
    return (numbers, None) if not bad else ([], "; ".join(bad))


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


def trial_id(storage: BaseStorage, study_name: str, number: int) -> int:
    """The storage's id of trial `number` (heartbeats and the storage API address trials by id)."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)


def requeue(study: optuna.Study, storage: BaseStorage, numbers: Iterable[int]) -> None:
    """Fail still-running trials that will not report (sweep interrupted) and queue their params again."""
    retry = (has_heartbeat(storage) and storage.get_heartbeat_stale_trial_callback()) or \
        RetryHeartbeatStaleTrialCallback()
    for number in numbers:
        frozen = storage.get_trial(trial_id(storage, study.study_name, number))
        if frozen.state != TrialState.RUNNING:
            continue
        tell(study, number, state=TrialState.FAIL)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry(study, storage.get_trial(trial_id(storage, study.study_name, number)))
        log.warning("trial %d interrupted: queued to run again", number)


def check_definition(study: optuna.Study, definition: dict, storage_url: str) -> None:
    """Record a new study's definition; refuse to resume one that was started with other settings."""
    directions = definition["direction"] if isinstance(definition["direction"], list) else [definition["direction"]]
    stored_directions = [d.name.lower() for d in study.directions]
    if stored_directions != directions:
        raise NlpexpError(f"study '{study.study_name}' in {storage_url} optimises {stored_directions}, not "
                          f"{directions}; name another with hydra.sweeper.study_name=<name>")
    stored = study.user_attrs.get(DEFINITION)
    if stored is None:
        study.set_user_attr(DEFINITION, definition)
        metrics = definition["metric"] if isinstance(definition["metric"], list) else [definition["metric"]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "experimental"
            study.set_metric_names(metrics)  # names the values in plots and the dashboard
    elif stored != definition:
        changed = ", ".join(key for key in definition if stored.get(key) != definition[key])
        raise NlpexpError(f"study '{study.study_name}' in {storage_url} was started with other settings "
                          f"({changed}); rerun its command to resume it, or name a new study with "
                          f"hydra.sweeper.study_name=<name>")


def set_program(study: optuna.Study, program: str, deletions: list[str]) -> None:
    """How to rerun a trial: the program that swept (sys.argv[0]) and its deletion overrides."""
    record = {"program": program, "deletions": list(deletions)}
    if study.user_attrs.get(PROGRAM) != record:
        study.set_user_attr(PROGRAM, record)


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
    # a password in the URL is not written (use PGPASSWORD or .pgpass)
    write_json_atomic(Path(sweep_dir) / STUDY_FILE, {"study_name": study_name, "storage": redact_text(storage_url)})


def locate(target: str) -> tuple[str, str | None, Path | None]:
    """(storage URL, study name, sweep dir) of a sweep dir (its study.json) or of a storage URL."""
    if "://" in target:
        return target, None, None
    study_file = Path(target) / STUDY_FILE
    if not study_file.is_file():
        raise NlpexpError(f"{target} has no {STUDY_FILE}: give a sweep dir of hparams_search or a storage URL")
    try:
        named = json.loads(study_file.read_text())
        return str(named["storage"]), str(named["study_name"]), Path(target)
    except (OSError, ValueError, TypeError, KeyError) as err:  # unreadable, not JSON, not an object, a key missing
        raise NlpexpError(f"{study_file} is not a study file ({type(err).__name__}: {err}); it holds "
                          f'{{"study_name": ..., "storage": ...}}: rewrite it or give the storage URL') from err


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
