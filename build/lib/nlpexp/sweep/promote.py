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


def promote_best(study: optuna.Study, root: Path | None = None) -> Path | None:
    """Register the best trial's run (best_model/, config.yaml, metrics.json) as the next version of the
    registry model named after the study, unless the newest version already is that run. Returns the
    version's folder, or None when no complete trial has a model."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    best = study.best_trial
    run_dir = Path(best.user_attrs.get(RUN_DIR, "")).resolve()
    if not (run_dir / "best_model").is_dir():
        log.info("best trial %d has no best_model/ to promote (%s)", best.number, run_dir)
        return None
    root = Path(root) if root else registry.registry_dir()
    folder = root / study.study_name
    folder.mkdir(parents=True, exist_ok=True)
    # Sweep processes sharing the study finish at about the same time: one promotes, the others see it done.
    with open(folder / ".promote.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        known = registry.versions(study.study_name, root)
        newest = folder / f"v{known[-1]}" if known else None
        if newest and json.loads((newest / "source.json").read_text()).get("run_dir") == str(run_dir):
            return newest
        version = registry.register(run_dir, study.study_name, root, direction=study.direction.name.lower())
    log.info("best model (trial %d) registered as registry:%s@latest (%s)", best.number, study.study_name, version)
    return version
