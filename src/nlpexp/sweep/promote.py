"""Best model promotion: the best trial's model becomes a version of `registry:<study>` (nlpexp.registry)."""

from __future__ import annotations

import fcntl
import json
import logging
from pathlib import Path

import optuna
from optuna.trial import TrialState

from nlpexp import registry
from nlpexp.sweep.study import RUN_DIR

log = logging.getLogger(__name__)


def promote_best(study: optuna.Study, root: Path | None = None, objective: int = 0) -> Path | None:
    """Register the best trial's run (best_trial) as the next version of the registry model named after the
    study, unless the newest version already is that run. Returns the version's folder, or None (no model)."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    best = best_trial(study, objective)
    run_dir = Path(best.user_attrs.get(RUN_DIR, "")).resolve()
    if not (run_dir / "best_model").is_dir():
        log.info("best trial %d has no best_model/ to promote (%s)", best.number, run_dir)
        return None
    root = Path(root) if root else registry.registry_dir()
    folder = registry.model_folder(study.study_name, root)  # a study name cannot lead out of the registry
    folder.mkdir(parents=True, exist_ok=True)
    # Sweep processes sharing the study finish at about the same time: one promotes, the others see it done.
    with open(folder / ".promote.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        known = registry.versions(study.study_name, root)
        newest = folder / f"v{known[-1]}" if known else None
        if newest and json.loads((newest / "source.json").read_text()).get("run_dir") == str(run_dir):
            return newest
        direction = study.directions[objective].name.lower()
        version = registry.register(run_dir, study.study_name, root, direction=direction)
    # where it lies: `nlpexp registry show <name>@latest`; the line stays within the console's 100 columns
    log.info("best model (trial %d): model.name_or_path=registry:%s@latest", best.number, study.study_name)
    return version


def best_trial(study: optuna.Study, objective: int = 0) -> optuna.trial.FrozenTrial:
    """study.best_trial; with several objectives, the Pareto-front trial best at `objective` (the lowest number
    among equals)."""
    if len(study.directions) == 1:
        return study.best_trial
    sign = -1 if study.directions[objective] == optuna.study.StudyDirection.MAXIMIZE else 1
    return min(study.best_trials, key=lambda t: (sign * t.values[objective], t.number))

