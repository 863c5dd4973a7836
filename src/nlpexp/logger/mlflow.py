"""MLflow: a local store in the run dir by default, a team's tracking server by MLFLOW_TRACKING_URI.

It talks to the store through an MlflowClient of its own, not mlflow's process-wide active run: trials of a
sweep run one after another in one process, and each must land in its own run. What a run holds: params and
config.yaml from its start; tags (git commit, user, source, host, study/trial); per-step metrics under nlpexp's
names (nlpexp.metrics), `start/` at step 0, the final figures under names of their own; at the end
provenance.json, metrics.json and best_model/ as an MLflow model of its flavor (nlpexp.logger.mlflow_model), which
the final `val/`, `test/` figures are linked to (its metrics in MLflow 3: Models tab, search_logged_models).
Everything sent passes nlpexp.redaction first.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nlpexp import metrics as metric_names
from nlpexp.logger.base import RunLogger, hparams_of
from nlpexp.redaction import redact
from nlpexp.registry_mlflow import RUN_ID_FILE
from nlpexp.rules import Name

log = logging.getLogger(__name__)
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
ROLES = {"val": "validation", "test": "test"}  # the split of the data each final figure is scored on


class MlflowLogger(RunLogger):
    def __init__(self, run_dir: Name, experiment: Name, tracking_uri: Name | None = None, run_name: Name | None = None,
                 tags: Mapping[str, Any] | None = None, log_model: bool = True):
        self.run_dir = Path(run_dir)
        self.experiment = experiment
        self.tracking_uri = tracking_uri
        self.run_name = run_name
        self.tags = redact({str(k): str(v) for k, v in (tags or {}).items()})
        self.log_model = log_model
        self.client = None
        self.run_id: str | None = None
        self._params: dict[str, str] = {}  # those logged: MLflow refuses to change a param's value
        self._model_id: str | None = None  # the logged model `best_model`, once logged: the final figures are its too
        self._datasets: dict[str, Any] = {}  # `val`, `test` -> the MLflow dataset its figures were scored on, if known

    def start(self, config: Mapping[str, Any]) -> None:
        from mlflow import MlflowClient

        from nlpexp.data import _FILES_READ

        server = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        store = self.run_dir / "mlflow"  # without a server: a local store in the run dir, never the working dir
        if not server:
            store.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=server or f"sqlite:///{(store / 'mlflow.db').resolve()}")
        resumed = self._resumed_run()
        self._resumed = resumed is not None
        # A local store keeps its artifacts beside it; a server decides where its own go.
        self.run_id = resumed or self._new_run(config, None if server else (store / "artifacts").resolve().as_uri())
        (self.run_dir / RUN_ID_FILE).write_text(self.run_id)
        # the set the run records its data files in: filled while it runs, read when it ends (after the recording)
        self._seed, self._config, self._files_read = config.get("seed"), config, _FILES_READ.get()
        self.client.log_dict(self.run_id, dict(config), "config.yaml")  # already redacted by the pipeline
        self._log_params(hparams_of(config))  # from the start: a running run is compared by its settings
        log.info("MLflow run %s in %s", self.run_id, re.sub(r"//[^/@]*@", "//<redacted>@", self.client.tracking_uri))

    def _new_run(self, config: Mapping[str, Any], artifact_location: str | None) -> str:
        experiment = self.client.get_experiment_by_name(self.experiment)
        experiment_id = experiment.experiment_id if experiment else \
            self.client.create_experiment(self.experiment, artifact_location=artifact_location)
        tags = redact({**_automatic_tags(self.run_dir), **self.tags})
        return self.client.create_run(experiment_id, run_name=self.run_name or _run_name(config),
                                      tags=tags).info.run_id

    def _resumed_run(self) -> str | None:
        """A run resumed from its checkpoint continues its MLflow run (its id is kept in the run dir)."""
        try:
            run_id = (self.run_dir / RUN_ID_FILE).read_text().strip()
            run = self.client.get_run(run_id)
        except Exception:  # a new run dir, another store, or the run was deleted: start a new one
            return None
        self.client.update_run(run_id, status="RUNNING")
        self._params = dict(run.data.params)
        return run_id

    def _log_params(self, params: Mapping[str, Any]) -> None:
        """The params not logged yet."""
        from mlflow.entities import Param

        new = {k: str(v)[:MAX_PARAM_LENGTH] for k, v in redact(dict(params)).items() if k not in self._params}
        if new:
            self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in new.items()])
            self._params.update(new)

    def record(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        if self.run_id is not None:  # MlflowClient.log_batch splits what is over the server's limit per call
            now = int(time.time() * 1000)
            self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step, **self._link(k))
                                                        for k, v in values.items()])

    def _link(self, key: str) -> dict[str, str]:
        """A final `val/`, `test/` figure, once the best model is logged, is the logged model's too: MLflow 3 keeps
        a metric sent with a model id in the run and in that model (with the split's dataset where it is known)."""
        if self._model_id is None or not metric_names.of_best_checkpoint({key: 0.0}):
            return {}
        dataset = self._datasets.get(key.partition("/")[0])
        scored_on = {"dataset_name": dataset.name, "dataset_digest": dataset.digest} if dataset else {}
        return {"model_id": self._model_id, **scored_on}

    def finish(self, hparams: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        from nlpexp.io import collect_provenance

        if self.run_id is None:
            return
        failure = sys.exc_info()[1]  # finish runs in the pipeline's `finally`: the error it unwinds, if any
        try:
            self._log_params(hparams)
            facts = collect_provenance(self._seed, sorted(self._files_read or ()))  # as the run dir gets it
            model = self.run_dir / "best_model"
            try:  # the model before the final figures: each is recorded once, in the run and linked to the model
                if self.log_model and failure is None and model.is_dir():
                    self._log_best_model(model)
                if self._model_id is not None and metrics:
                    self._log_datasets(metrics, facts["data_files"])
            finally:
                if metrics:
                    self.record_results(metrics)
                    self.client.log_dict(self.run_id, dict(metrics), "metrics.json")
            self.client.log_dict(self.run_id, redact(facts), "provenance.json")
        finally:
            self.client.set_terminated(self.run_id, status=_status(failure))
            self.run_id = None

    def _log_best_model(self, model: Path) -> None:
        """best_model/ as an MLflow model of its flavor, MLflow 3's logged model `best_model` of this run (its
        "Logged models" list, an output at the best checkpoint's step), where nlpexp knows a flavor; else its files
        as they are, as the run's artifact."""
        from mlflow.entities import LoggedModelOutput

        from nlpexp.logger import mlflow_model

        staging = Path(tempfile.mkdtemp(prefix=".mlflow-model-", dir=self.run_dir))
        try:
            flavor = mlflow_model.save(model, staging / "best_model", self._config)
            if flavor is None:
                self.client.log_artifacts(self.run_id, str(model), "best_model")
                return
            experiment = self.client.get_run(self.run_id).info.experiment_id
            logged = self.client.create_logged_model(experiment, "best_model", self.run_id, model_type=flavor)
            self.client.log_model_artifacts(logged.model_id, str(staging / "best_model"))
            self.client.finalize_logged_model(logged.model_id, "READY")
            step = self._last_step if self._best_step is None else self._best_step  # the step its figures are at
            self.client.log_outputs(self.run_id, [LoggedModelOutput(logged.model_id, step)])
            self._model_id = logged.model_id
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _log_datasets(self, metrics: Mapping[str, float], data_files: Mapping[str, str]) -> None:
        """The datasets the final figures were scored on, where known: the run's "Datasets used" (as MLflow's own
        log_metrics(dataset=...) records them), and each figure's dataset in the logged model."""
        from mlflow.entities import DatasetInput, InputTag

        splits = {key.partition("/")[0] for key in metric_names.of_best_checkpoint(metrics)}
        self._datasets = _evaluation_datasets(self._config, data_files, splits)
        if self._datasets:
            self.client.log_inputs(self.run_id, [DatasetInput(dataset, [InputTag("mlflow.data.context", ROLES[split])])
                                                 for split, dataset in self._datasets.items()])


def _run_name(config: Mapping[str, Any]) -> str:
    """`<study>/<trial>` in a sweep, else the task preset's name (`SbertNliTask` -> `sbert_nli`)."""
    from hydra_plugins.nlpexp_optuna_sweeper import ENV_STUDY, ENV_TRIAL

    if ENV_STUDY in os.environ:
        return f"{os.environ[ENV_STUDY]}/{os.environ.get(ENV_TRIAL, '')}"
    target = str((config.get("task") or {}).get("_target_", "run")).rsplit(".", 1)[-1].removesuffix("Task")
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", target).lower()


def _automatic_tags(run_dir: Path) -> dict[str, str]:
    """Where, by whom and from which code the run is, and, in a sweep, which study and trial (see nlpexp.sweep);
    `mlflow.*` are MLflow's own system tags, which its UI shows on the run page."""
    from hydra_plugins.nlpexp_optuna_sweeper import ENV_STUDY, ENV_TRIAL
    from nlpexp.paths import git_state

    tags = {"nlpexp.run_dir": str(run_dir.resolve()), "nlpexp.host": socket.gethostname(),
            "mlflow.user": getpass.getuser(), "mlflow.source.type": "LOCAL",
            "mlflow.source.name": Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "nlpexp"}
    git = git_state()
    if git["commit"]:
        tags.update({"mlflow.source.git.commit": git["commit"], "nlpexp.git_dirty": str(git["dirty"]).lower()})
    if ENV_STUDY in os.environ:
        tags.update({"nlpexp.study": os.environ[ENV_STUDY], "nlpexp.trial": os.environ.get(ENV_TRIAL, "")})
    return tags


def _status(failure: BaseException | None) -> str:
    optuna = sys.modules.get("optuna")
    stopped = isinstance(failure, KeyboardInterrupt) or (optuna is not None and isinstance(failure, optuna.TrialPruned))
    return "FINISHED" if failure is None else "KILLED" if stopped else "FAILED"


def _evaluation_datasets(config: Mapping[str, Any], data_files: Mapping[str, str], splits: set[str]) -> dict[str, Any]:
    """Each of `splits` (`val`, `test`) -> the MLflow dataset its figures are scored on, `<data.name>/validation`
    or `<data.name>/test`, where that is known: the run's data is all it evaluates on (not sbert_nli's, whose
    `task.sts` is data of its own: which figure is scored on which data is the task's). Its digest is of the data
    settings (the data root left out) and the sha256 of every data file read: a change in either changes it."""
    from mlflow.entities import Dataset

    data, task = config.get("data") or {}, config.get("task") or {}
    of_its_own = [v for v in task.values() if isinstance(v, Mapping) and v.get("_target_") == data.get("_target_")]
    if not data.get("name") or not data.get("_target_") or of_its_own:
        return {}
    settings = {key: value for key, value in data.items() if key != "root"}
    content = json.dumps([settings, sorted(data_files.values())], sort_keys=True, default=str)
    digest = hashlib.sha256(content.encode()).hexdigest()[:12]
    name = redact(str(data["name"]))
    return {split: Dataset(f"{name}/{role}", digest, "nlpexp", json.dumps({"data": name, "split": role}))
            for split, role in ROLES.items() if split in splits}
