"""Best model promotion: the best trial's best_model/ with its config and metrics, in one stable place."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import optuna
from optuna.trial import TrialState

from nlpexp.io import write_json_atomic
from nlpexp.sweep.study import RUN_DIR

log = logging.getLogger(__name__)
TRIAL_FILE = "trial.json"
RUN_FILES = ("config.yaml", "metrics.json")


def promote_best(study: optuna.Study, target: Path) -> Path | None:
    """Copy the best trial's model to `target` (a SentenceTransformer/HF folder plus config.yaml,
    metrics.json and trial.json); returns target, or None when there is nothing to promote."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    best = study.best_trial
    run_dir = Path(best.user_attrs.get(RUN_DIR, ""))
    if not (run_dir / "best_model").is_dir():
        log.info("best trial %d has no best_model/ to promote (%s)", best.number, run_dir)
        return None
    trial = {"study": study.study_name, "trial": best.number, "value": best.value, "params": dict(best.params),
             "run_dir": str(run_dir)}
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _lock(target.parent / ".promote.lock"):
        if _promoted(target) == trial:
            return target
        staging = target.with_name(f".{target.name}.{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(run_dir / "best_model", staging)
        for name in RUN_FILES:
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, staging / name)
        write_json_atomic(staging / TRIAL_FILE, trial)
        if target.exists():
            retired = target.with_name(f".{target.name}.old.{os.getpid()}")
            os.replace(target, retired)
            shutil.rmtree(retired)
        os.replace(staging, target)
    log.info("best model (trial %d) promoted to %s", best.number, target)
    return target


def _promoted(target: Path) -> dict | None:
    path = target / TRIAL_FILE
    return json.loads(path.read_text()) if path.is_file() else None


@contextmanager
def _lock(path: Path):
    """Several sweep processes of one study finish at about the same time; one promotes at a time."""
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
