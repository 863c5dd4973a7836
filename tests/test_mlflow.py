"""logger=mlflow and the MLflow Model Registry, against a real `mlflow server` started here on localhost."""

from __future__ import annotations

import json

import pytest

from nlpexp import NlpexpError, registry
from nlpexp.pipeline import run
from tests.services import run_logged_to_mlflow

SMOKE = ("task=sbert_nli", "model=tiny_bert", "debug=smoke", "logger=mlflow")


@pytest.fixture(scope="module")
def tracked_run(tracking_uri, tmp_path_factory, data_root):
    """One smoke run logged to the server, with a secret in its environment and a tag of its own."""
    root = tmp_path_factory.mktemp("tracked")
    tags = ["+logger.mlflow.tags.team=nlp", "+logger.mlflow.tags.note=hf_secret_value_123",
            "+logger.mlflow.tags.api_token=abc"]
    metrics, client, found = run_logged_to_mlflow(tracking_uri, root, data_root, [*SMOKE, *tags],
                                                  env={"HF_TOKEN": "hf_secret_value_123"})
    return root, metrics, client, found


def test_a_run_records_config_metrics_params_tags_and_model_on_the_server(tracked_run, tmp_path):
    root, metrics, client, found = tracked_run
    assert found.info.status == "FINISHED" and found.info.run_name == "sbert_nli"  # after the task preset
    assert found.data.tags["team"] == "nlp" and found.data.tags["nlpexp.run_dir"] == str(root / "run")
    assert found.data.tags["note"] == found.data.tags["api_token"] == "<redacted>"  # a secret value, a secret key
    assert found.data.params["optimizer.lr"] and found.data.params["trainer.batch_size"] == "8"
    assert found.data.metrics["val/spearman_cosine"] == pytest.approx(metrics["val/spearman_cosine"])
    losses = client.get_metric_history(found.info.run_id, "train/loss")
    assert [m.step for m in losses] == [1, 2, 3, 4]  # every log step (debug=smoke logs each), no final appended
    evals = [m.step for m in client.get_metric_history(found.info.run_id, "eval/spearman_cosine")]
    assert evals == [0, 2, 4]  # the starting model, each evaluation; the best checkpoint's is val/spearman_cosine

    config_file = client.download_artifacts(found.info.run_id, "config.yaml", str(tmp_path))
    config = open(config_file).read()
    assert "hf_secret_value_123" not in config and "<redacted>" in config and "tiny_bert" in config
    (model,) = client.search_logged_models([found.info.experiment_id])  # the run's "Logged models" list
    assert (model.name, model.source_run_id, model.model_type) == ("best_model", found.info.run_id,
                                                                    "sentence_transformers")
    assert "MLmodel" in {a.path for a in client.list_logged_model_artifacts(model.model_id)}
    finals = json.loads((root / "run" / "metrics.json").read_text())
    finals = {key: value for key, value in finals.items() if key.startswith(("val/", "test/"))}
    assert sorted(m.key for m in model.metrics) == sorted(finals) and "val/spearman_cosine" in finals
    assert {m.key: m.value for m in model.metrics} == pytest.approx(finals)  # the Models tab's columns
    assert {m.dataset_name for m in model.metrics} == {None}  # sbert_nli scores on task.sts: no dataset claimed
    ranked = client.search_logged_models([found.info.experiment_id], filter_string="metrics.`val/spearman_cosine` > -2",
                                         order_by=[{"field_name": "metrics.val/spearman_cosine", "ascending": False}])
    assert [m.model_id for m in ranked] == [model.model_id]  # models sort and filter by nlpexp's names
    assert not [p for p in root.iterdir() if p.name not in ("run", "ledger.jsonl")]  # nothing in the cwd
    assert not (root / "run" / "mlflow").exists()  # a server: no local store


def test_a_version_is_published_to_the_model_registry_and_resolved_from_it(tracked_run, tracking_uri, tmp_path,
                                                                            monkeypatch, capsys):
    root, _, client, found = tracked_run
    local = tmp_path / "local"
    registry.register(root / "run", "tiny-nli", local)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    assert registry.main(["--root", str(local), "publish", "tiny-nli@latest", "--alias", "champion"]) == 0
    assert capsys.readouterr().out.strip() == "registry:mlflow:tiny-nli@v1"
    version = client.get_model_version_by_alias("tiny-nli", "champion")
    assert version.version == "1" and version.run_id == found.info.run_id  # the training run is the source
    source = client.get_logged_model(version.source.removeprefix("models:/"))  # the version's figures: its model's
    assert source.name == "best_model" and "val/spearman_cosine" in {m.key for m in source.metrics}

    elsewhere = tmp_path / "elsewhere"  # another machine's registry: only the server has the model
    for reference in ("registry:mlflow:tiny-nli@champion", "registry:mlflow:tiny-nli@latest",
                      "registry:mlflow:tiny-nli@v1"):
        model = registry.resolve(reference, elsewhere)
        assert model == elsewhere / ".mlflow" / "tiny-nli" / "v1" / "model.sentence_transformer"
        published = local / "tiny-nli" / "v1" / "model"
        assert (model / "modules.json").read_bytes() == (published / "modules.json").read_bytes()
        assert (model / "nli_head.json").read_bytes() == (published / "nli_head.json").read_bytes()

    with pytest.raises(NlpexpError, match="no model 'absent'"):
        registry.resolve("registry:mlflow:absent", elsewhere)
    with pytest.raises(NlpexpError, match="MLflow model name"):
        registry.resolve("registry:mlflow:../../etc@v1", elsewhere)


def test_a_registry_mlflow_model_trains_on(tracked_run, tracking_uri, compose_run, monkeypatch, tmp_path):
    """`model.name_or_path=registry:mlflow:...` loads the published model in a run."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    cfg = compose_run("task=sbert_nli", "model=tiny_bert", "debug=smoke", "logger=none", "mode=eval",
                      "model.name_or_path=registry:mlflow:tiny-nli@champion")
    metrics = run(cfg)
    assert "val/spearman_cosine" in metrics
    assert (tmp_path / "registry" / ".mlflow" / "tiny-nli" / "v1" / "MLmodel").is_file()


def test_without_a_server_the_store_is_in_the_run_dir(compose_run, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    cfg = compose_run(*SMOKE, "trainer.max_steps=2", "trainer.eval_every_steps=2")
    run(cfg)
    store = tmp_path / "run" / "mlflow"
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    (found,) = client.search_runs([client.get_experiment_by_name("nlpexp").experiment_id])
    assert found.info.status == "FINISHED" and "val/spearman_cosine" in found.data.metrics
    (model,) = client.search_logged_models([found.info.experiment_id])  # the local store links the figures too
    assert {m.key: m.value for m in model.metrics}["val/spearman_cosine"] == found.data.metrics["val/spearman_cosine"]
    assert found.info.artifact_uri.startswith((store / "artifacts").as_uri())
    assert (store / "artifacts").is_dir() and any((store / "artifacts").rglob("modules.json"))
    assert {p.name for p in tmp_path.iterdir()} <= {"ledger.jsonl", "registry", "run"}  # no mlruns/ in the cwd


def test_a_resumed_run_continues_its_mlflow_run_and_a_failed_one_says_so(tracking_uri, tmp_path):
    from types import SimpleNamespace

    from mlflow import MlflowClient

    from nlpexp.logger import MlflowLogger

    def attempt(step: int, fail: bool) -> str:
        logger = MlflowLogger(run_dir=str(tmp_path), experiment="resume", tracking_uri=tracking_uri)
        logger.start({"seed": 1})
        run_id = logger.run_id
        logger.on_log(None, SimpleNamespace(global_step=step), None, logs={"loss": float(step)})
        try:
            if fail:
                raise RuntimeError("killed")  # finish() runs while this unwinds, as in the pipeline's `finally`
        finally:
            logger.finish({"optimizer.lr": 1e-3}, {})
        return run_id

    with pytest.raises(RuntimeError):
        attempt(1, fail=True)
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("resume").experiment_id])
    assert run.info.status == "FAILED"
    first = run.info.run_id
    assert attempt(2, fail=False) == first  # trainer.resume=true in the same run dir: the same MLflow run
    assert client.get_run(first).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(first, "train/loss")] == [1, 2]


def test_without_a_tracking_uri_the_message_names_what_each_command_takes(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(NlpexpError) as resolving:  # run.py has no --tracking-uri: the message must not name one
        registry.resolve("registry:mlflow:tiny-nli@champion", tmp_path)
    assert "MLFLOW_TRACKING_URI" in str(resolving.value) and "--tracking-uri" not in str(resolving.value)
    from nlpexp import registry_mlflow

    with pytest.raises(NlpexpError, match="MLFLOW_TRACKING_URI or pass --tracking-uri"):
        registry_mlflow.publish(tmp_path, "tiny-nli")
