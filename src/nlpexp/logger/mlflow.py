"""MLflow: a local store in the run dir by default, a team's tracking server by MLFLOW_TRACKING_URI.

It talks to the store through an MlflowClient of its own, not mlflow's process-wide active run: trials of a
sweep run one after another in one process, and each must land in its own run.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nlpexp import metrics as metric_names
from nlpexp.logger.base import RunLogger
from nlpexp.redaction import redact

log = logging.getLogger(__name__)
RUN_ID_FILE = "mlflow_run_id"
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
MAX_BATCH = 1000  # MLflow's limit on metrics per log_batch call


class MlflowLogger(RunLogger):
    def __init__(self, run_dir: str, experiment: str, tracking_uri: str | None = None, run_name: str | None = None,
                 tags: Mapping[str, Any] | None = None, log_model: bool = True):
        self.run_dir = Path(run_dir)
        self.experiment = experiment
        self.tracking_uri = tracking_uri
        self.run_name = run_name
        self.tags = redact({str(k): str(v) for k, v in (tags or {}).items()})
        self.log_model = log_model
        self.client = None
        self.run_id: str | None = None
        self._last_step = 0

    def resolved_tracking_uri(self) -> str:
        """Given, else MLFLOW_TRACKING_URI, else an sqlite store in the run dir (never the working directory)."""
        return self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or \
            f"sqlite:///{(self.run_dir / 'mlflow' / 'mlflow.db').resolve()}"

    def _local_store(self) -> bool:
        return not (self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"))

    def start(self, config: Mapping[str, Any]) -> None:
        from mlflow import MlflowClient

        uri = self.resolved_tracking_uri()
        if self._local_store():
            (self.run_dir / "mlflow").mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=uri)
        self.run_id = self._resumed_run() or self._new_run()
        (self.run_dir / RUN_ID_FILE).write_text(self.run_id)
        self.client.log_dict(self.run_id, dict(config), "config.yaml")  # already redacted by the pipeline
        log.info("MLflow run %s in %s", self.run_id, re.sub(r"//[^/@]*@", "//<redacted>@", uri))  # no credentials

    def _new_run(self) -> str:
        experiment = self.client.get_experiment_by_name(self.experiment)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            # A local store keeps its artifacts beside it; a server decides where its own go.
            location = (self.run_dir / "mlflow" / "artifacts").resolve().as_uri() if self._local_store() else None
            experiment_id = self.client.create_experiment(self.experiment, artifact_location=location)
        return self.client.create_run(experiment_id, run_name=self.run_name or self.run_dir.name,
                                      tags={**_automatic_tags(self.run_dir), **self.tags}).info.run_id

    def _resumed_run(self) -> str | None:
        """A run resumed from its checkpoint continues its MLflow run (its id is kept in the run dir)."""
        id_file = self.run_dir / RUN_ID_FILE
        if not id_file.is_file():
            return None
        try:
            run_id = id_file.read_text().strip()
            self.client.get_run(run_id)
        except Exception:  # another store, or the run was deleted: start a new one
            return None
        self.client.update_run(run_id, status="RUNNING")
        return run_id

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.run_id is None or not logs:
            return
        self._last_step = state.global_step
        self._log_metrics(metric_names.from_trainer_log_step(logs), state.global_step)

    def _log_metrics(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in values.items()]
        for start in range(0, len(batch), MAX_BATCH):
            self.client.log_batch(self.run_id, metrics=batch[start:start + MAX_BATCH])

    def finish(self, hparams: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        if self.run_id is None:
            return
        from mlflow.entities import Param

        failure = sys.exc_info()[1]  # finish runs in the pipeline's `finally`: the error it unwinds, if any
        try:
            params = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in hparams.items()]
            self.client.log_batch(self.run_id, params=params)
            if metrics:  # at the last step: the final values are the ones MLflow shows as the run's
                self._log_metrics(metrics, self._last_step)
            model = self.run_dir / "best_model"
            if self.log_model and failure is None and model.is_dir():
                self.client.log_artifacts(self.run_id, str(model), "best_model")
        finally:
            self.client.set_terminated(self.run_id, status=_status(failure))
            self.run_id = None


def _automatic_tags(run_dir: Path) -> dict[str, str]:
    """Where the run is and, in a sweep, which study and trial it is (see nlpexp.sweep)."""
    from nlpexp.sweep import ENV_STUDY, ENV_TRIAL

    tags = {"nlpexp.run_dir": str(run_dir.resolve())}
    if ENV_STUDY in os.environ:
        tags.update({"nlpexp.study": os.environ[ENV_STUDY], "nlpexp.trial": os.environ.get(ENV_TRIAL, "")})
    return tags


def _status(failure: BaseException | None) -> str:
    if failure is None:
        return "FINISHED"
    optuna = sys.modules.get("optuna")
    if isinstance(failure, KeyboardInterrupt) or (optuna is not None and isinstance(failure, optuna.TrialPruned)):
        return "KILLED"
    return "FAILED"
