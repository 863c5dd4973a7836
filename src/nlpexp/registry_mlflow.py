"""The MLflow Model Registry beside nlpexp's own: publish a version there, resolve `registry:mlflow:` from it
(docs/scaling.md).

A published version's source is the run that trained it, where that run was tracked on the same server
(logger=mlflow): its logged model `best_model` (nlpexp.logger.mlflow_model), nothing uploaded again. Else the
local version's folder is uploaded once, as the artifact `model/` of a run of experiment `nlpexp-registry`.
Resolving downloads the version's source once into <registry>/.mlflow/<name>/v<N>/ (complete or absent: it is
downloaded beside and renamed into place) and loads the model from there.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from nlpexp import NlpexpError, first_line
from nlpexp.copies import refuse_links, refuse_links_on_the_way

SCHEME = "mlflow:"
RUN_ID_FILE = "mlflow_run_id"  # in a run dir: the MLflow run that logger=mlflow recorded it in
# the data folder of each MLflow model flavor nlpexp writes (nlpexp.logger.mlflow_model): the model's own files
DATA_DIRS = ("model.sentence_transformer", "artifacts/best_model")  # pyfunc: artifacts/<the folder's name>
EXPERIMENT = "nlpexp-registry"


def _client(name: str, tracking_uri: str | None, how: str):
    """A client of the server (the given one, else MLFLOW_TRACKING_URI's), once `name` is a valid model name."""
    from mlflow import MlflowClient

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise NlpexpError(f"MLflow model name {name!r}: use letters, digits, '.', '_' or '-'")
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise NlpexpError(f"the MLflow Model Registry needs a tracking server: {how}")
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def publish(version_dir: Path, name: str, alias: str | None = None, tracking_uri: str | None = None) -> int:
    """A local registry version (<registry>/<name>/v<N>/) as the next version of MLflow model `name`."""
    from mlflow.exceptions import MlflowException

    client = _client(name, tracking_uri, "set MLFLOW_TRACKING_URI or pass --tracking-uri")
    try:
        run, model_id = _training_run(client, version_dir)
        source = f"models:/{model_id}" if run else None
        if run is None:  # a run of its own holding the version's folder, for a model no run on this server logged
            experiment = client.get_experiment_by_name(EXPERIMENT)
            experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
            run = client.create_run(experiment_id, run_name=f"{name}-{version_dir.name}",
                                    tags={"nlpexp.registry_version": str(version_dir)})
            client.log_artifacts(run.info.run_id, str(version_dir), "model")
            client.set_terminated(run.info.run_id)
            source = f"{run.info.artifact_uri}/model"
        if not client.search_registered_models(filter_string=f"name = '{name}'"):
            client.create_registered_model(name)
        version = client.create_model_version(name, source=source, run_id=run.info.run_id, model_id=model_id,
                                              tags={"nlpexp.local_version": version_dir.name})
        if alias:
            client.set_registered_model_alias(name, alias, version.version)
    except MlflowException as err:
        raise NlpexpError(f"publishing {version_dir} as MLflow model {name!r}: {first_line(err)}") from err
    return int(version.version)


def _training_run(client, version_dir: Path):
    """The run on this server that trained the version's model and the id of its logged model `best_model`;
    (None, None) when there is none."""
    from mlflow.exceptions import MlflowException

    # TypeError: a handed version's source.json that is no mapping; MlflowException: another server's run
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, MlflowException):
        run_dir = Path(json.loads((version_dir / "source.json").read_text())["run_dir"])
        run = client.get_run((run_dir / RUN_ID_FILE).read_text().strip())
        logged = client.search_logged_models([run.info.experiment_id], filter_string=
                                             f"source_run_id = '{run.info.run_id}' AND name = 'best_model'")
        if logged:
            return run, logged[0].model_id
    return None, None


def resolve(reference: str, root: Path) -> Path:
    """`mlflow:<name>[@latest|@v<N>|@<alias>]` -> the downloaded version's model folder."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    name, _, alias = reference.removeprefix(SCHEME).partition("@")
    client = _client(name, None, f"set MLFLOW_TRACKING_URI to the server that holds registry:{reference}")
    try:
        version = _version(client, name, alias or "latest")
        _check_source(version.source, client.tracking_uri, f"registry:{reference}")
        target = root / ".mlflow" / name / f"v{version.version}"
        refuse_links_on_the_way(target, f"registry:{reference}", below=Path(root))  # nothing downloaded through one
        if not target.is_dir():
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
            try:
                os.rename(mlflow.artifacts.download_artifacts(version.source, dst_path=str(staging),
                                                              tracking_uri=client.tracking_uri), target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except MlflowException as err:
        raise NlpexpError(f"registry:{reference}: {first_line(err)}") from err
    refuse_links(target, f"registry:{reference}", below=Path(root))  # a download has none: one planted is refused
    if (target / "model").is_dir():  # an uploaded version's folder
        return target / "model"
    if (target / "MLmodel").is_file():  # a logged model: its flavor's data folder
        return next((target / d for d in DATA_DIRS if (target / d).is_dir()), target)
    raise NlpexpError(f"registry:{reference}: MLflow version {version.version} holds no nlpexp model folder")


# Where a version's source may be downloaded from: what the tracking server itself serves, and object stores (their
# credentials go to their own provider). An http(s) source elsewhere would be sent the server's credentials
# (MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN, which MLflow adds for any http artifact URI), and a local path would
# copy any folder of this machine into the registry: whoever created the version chose it, not the person.
_SERVED = ("models", "runs", "mlflow-artifacts", "s3", "gs", "wasbs", "abfss", "hdfs", "oss")


def _check_source(source: str, tracking_uri: str, reference: str) -> None:
    from urllib.parse import urlsplit

    found, server = urlsplit(source or ""), urlsplit(tracking_uri)
    local_store = server.scheme in ("", "file", "sqlite")  # the person's own machine holds the whole registry
    if found.scheme in _SERVED or (found.scheme in ("", "file") and local_store) or \
            (found.scheme in ("http", "https") and (found.scheme, found.netloc) == (server.scheme, server.netloc)):
        return
    raise NlpexpError(f"{reference}: the version's source {source} is not on the tracking server {tracking_uri}: "
                      f"nlpexp downloads only from the server (its credentials would go where the source points)")


def _version(client, name: str, alias: str):
    if alias == "latest":
        found = client.search_model_versions(filter_string=f"name = '{name}'")
        if not found:
            raise NlpexpError(f"MLflow Model Registry has no model {name!r}; see `nlpexp registry publish`")
        return max(found, key=lambda v: int(v.version))
    if re.fullmatch(r"v\d+", alias):
        return client.get_model_version(name, alias[1:])
    return client.get_model_version_by_alias(name, alias)
