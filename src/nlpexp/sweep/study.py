"""What the sweeper, the trials and the summary agree on: a study's identity, trial bookkeeping, how to find a
study (its storage: nlpexp.sweep.storage), and how each sweep process seeds its sampler."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import socket
import time
import uuid
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.storages import BaseStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from nlpexp import NlpexpError
from nlpexp.adapters import has_heartbeat, tell
from nlpexp.io import write_json_atomic
from nlpexp.redaction import redact, redact_text
from nlpexp.sweep.storage import open_storage

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
STREAM_ATTR = "nlpexp:sampler_stream"


def default_study_name(preset: str, definition: dict, storage: str | None, sweep_dir: str | None,
                       studies_dir: Path) -> str:
    """<preset>-<hash of the definition and of where the study is stored>: the same search on another storage
    (or sweep dir, or studies dir) is another study, and promotes into another registry model."""
    where = redact_text(storage) if storage else str(Path(sweep_dir or studies_dir).resolve())  # no password
    text = json.dumps({**definition, "stored_in": where}, sort_keys=True)
    return f"{preset}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def definition(arguments: list[str], directions: list[str], metrics: list[str], sampler: Any, pruner: Any) -> dict:
    """What makes a study (overrides, space, objectives, sampler, pruner; not n_trials), redacted as it is stored."""
    from omegaconf import OmegaConf

    one = len(directions) == 1
    return redact({"arguments": sorted(arguments), "direction": directions[0] if one else directions,
                   "metric": metrics[0] if one else metrics, "sampler": OmegaConf.to_container(sampler, resolve=True),
                   "pruner": OmegaConf.to_container(pruner, resolve=True)})


def open_study(storage: BaseStorage, name: str, definition: dict, storage_url: str, pruner: Any,
               program: str, deletions: list[str]) -> optuna.Study:
    """Create the study, or load it when its command ran before: then it must have been started the same way
    (its definition: overrides, space, objectives, sampler, pruner). Its sampler is set before any draw."""
    directions = definition["direction"] if isinstance(definition["direction"], list) else [definition["direction"]]
    study = optuna.create_study(study_name=name, storage=storage, directions=directions, pruner=pruner,
                                sampler=optuna.samplers.RandomSampler(), load_if_exists=True)
    stored_directions = [d.name.lower() for d in study.directions]
    if stored_directions != directions:
        raise NlpexpError(f"study '{name}' in {storage_url} optimises {stored_directions}, not "
                          f"{directions}; name another with hydra.sweeper.study_name=<name>")
    stored = study.user_attrs.get(DEFINITION)
    if stored is None:
        study.set_user_attr(DEFINITION, definition)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "experimental"
            study.set_metric_names(definition["metric"] if len(directions) > 1 else [definition["metric"]])
    elif stored != definition:
        changed = ", ".join(key for key in definition if stored.get(key) != definition[key])
        raise NlpexpError(f"study '{name}' in {storage_url} was started with other settings ({changed}); rerun "
                          f"its command to resume it, or name a new study with hydra.sweeper.study_name=<name>")
    if study.user_attrs.get(PROGRAM) != {"program": program, "deletions": deletions}:  # how to rerun a trial
        study.set_user_attr(PROGRAM, {"program": program, "deletions": deletions})
    return study


def sampler_seed(storage: BaseStorage, study: optuna.Study, sampler: Any) -> tuple[int | None, str]:
    """This sweep process's sampler seed (`sampler`: its config), and how it was chosen. A fresh study: the seed
    itself, as upstream. A process joining a study with trials in it must not draw another's points again: its seed
    is a stream (seed, trials when it joined, its rank among the processes joining at that count; recorded in the
    study), reproducible and independent of every other, unlike seed + k. Grid and QMC samplers keep their seed:
    their position lives in the study. (Two processes joining in the same instant may share rank 0.)"""
    study_id = storage.get_study_id_from_name(study.study_name)
    joined_at = len(storage.get_all_trials(study_id, deepcopy=False))
    prefix = f"{STREAM_ATTR}:{joined_at}:"
    rank = sum(key.startswith(prefix) for key in storage.get_study_system_attrs(study_id))
    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    storage.set_study_system_attr(study_id, prefix + token, time.time())
    seed, keep = sampler.get("seed"), str(sampler["_target_"]).endswith(("GridSampler", "QMCSampler"))
    return (seed if keep else stream_seed(seed, joined_at, rank)), f"joined the study at trial {joined_at}, rank {rank}"


def stream_seed(seed: int | None, joined_at: int, rank: int) -> int | None:
    """The seed of the stream (joined_at, rank) of `seed`; the seed itself for the first stream."""
    if seed is None or (joined_at, rank) == (0, 0):
        return seed
    return int(np.random.SeedSequence([seed, joined_at, rank]).generate_state(1)[0])


def objectives(names: Any, directions: list[str], promote_best: bool, promote_objective: Any) -> tuple[
        list[str], int | None]:
    """The objectives' names (metric_names as given, else value / value_<i>) and the index of the one that picks
    the model to promote: the only one, or the one promote_objective names (None without promote_best)."""
    count = len(directions)
    metrics = default_metric_names(count)
    if names is not None:
        metrics = [str(names)] if isinstance(names, str) else [str(n) for n in names]
    if len(metrics) != count:
        raise NlpexpError(f"hydra.sweeper.metric_names names {len(metrics)} objective(s) ({', '.join(metrics)}) "
                          f"but hydra.sweeper.direction has {count}")
    if not promote_best:
        return metrics, None
    if promote_objective is None and count > 1:
        raise NlpexpError(f"hydra.sweeper.promote_objective must say which of the {count} objectives "
                          f"({', '.join(metrics)}) picks the model to promote (a name or an index), or set "
                          f"hydra.sweeper.promote_best=false")
    if promote_objective is None or promote_objective in metrics:
        return metrics, metrics.index(promote_objective) if promote_objective is not None else 0
    if isinstance(promote_objective, int) and 0 <= promote_objective < count:
        return metrics, promote_objective
    raise NlpexpError(f"hydra.sweeper.promote_objective={promote_objective} is not an objective: "
                      f"{', '.join(metrics)} or an index below {count}")


def default_metric_names(count: int) -> list[str]:
    return ["value"] if count == 1 else [f"value_{i}" for i in range(count)]


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


def trial_id(storage: BaseStorage, study_name: str, number: int) -> int:
    """The storage's id of trial `number` (heartbeats and the storage API address trials by id)."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)


def requeue(study: optuna.Study, storage: BaseStorage, numbers: Iterable[int]) -> None:
    """Fail still-running trials that will not report (sweep interrupted) and queue their params again."""
    retry = (has_heartbeat(storage) and storage.get_heartbeat_stale_trial_callback()) or \
        RetryHeartbeatStaleTrialCallback()
    for number in numbers:
        tid = trial_id(storage, study.study_name, number)
        if storage.get_trial(tid).state != TrialState.RUNNING:
            continue
        tell(study, number, state=TrialState.FAIL)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry(study, storage.get_trial(tid))
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
        url, name = str(named["storage"]), str(named["study_name"])
    except (OSError, ValueError, TypeError, KeyError) as err:  # unreadable, not JSON, not an object, a key missing
        raise NlpexpError(f"{study_file} is not a study file ({type(err).__name__}: {err}); it holds "
                          f'{{"study_name": ..., "storage": ...}}: rewrite it or give the storage URL') from err
    if not re.fullmatch(r"(sqlite:///|journal://)/[^?]*", url):  # a sweep dir is data: no server it names
        raise NlpexpError(f"{study_file} names the storage {url}, a server: the person gives a server (and its "
                          f"credentials go there): python -m nlpexp.sweep summary '<storage URL>' --study {name} "
                          f"--out {target}")
    return url, name, Path(target)


def load_study(target: str, study_name: str | None = None) -> tuple[optuna.Study, Path | None]:
    """A study from a sweep dir or a storage URL (the only study there unless named); also its sweep dir."""
    url, named, sweep_dir = locate(target)
    study_name = study_name or named
    storage = open_storage(url, read_only=True)  # a study to read: never a new storage or folder
    names = optuna.get_all_study_names(storage)
    if study_name is None:
        if len(names) != 1:
            raise NlpexpError(f"{url} holds {len(names)} studies ({', '.join(names)}): name one with --study")
        study_name = names[0]
    if study_name not in names:
        raise NlpexpError(f"no study '{study_name}' in {url}; it holds: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=study_name, storage=storage), sweep_dir
