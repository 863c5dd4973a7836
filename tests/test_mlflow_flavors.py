"""Each task's best model is an MLflow model of its flavor, in the run's "Logged models" list on a real `mlflow
server`: `mlflow.pyfunc.load_model` predicts labels (classification) and summaries (summarization, seq2seq and
decoder-only) as the run itself did, `mlflow models serve` answers a request, and a published version resolves."""

from __future__ import annotations

import json

import pytest

from nlpexp import registry
from nlpexp.pipeline import run
from tests.services import mlflow_serving

_SUMMARIES = ("task=summarization", "data=dialogsum", "data.max_eval_samples=8", "generation.num_beams=1",
              "generation.max_new_tokens=8")
CASES = {
    "classification": ("task=classification", "data=imdb", "model=tiny_bert"),
    "summarization_seq2seq": (*_SUMMARIES, "model=tiny_bart"),
    "summarization_decoder_only": (*_SUMMARIES, "model=tiny_gpt2"),
}


@pytest.fixture(scope="module")
def logged(mlflow_uri, tmp_path_factory, data_root):
    """case -> (run dir, the run, its logged model): one smoke run of each case, on the server."""
    from mlflow import MlflowClient

    from nlpexp.config import compose

    client, found = MlflowClient(mlflow_uri), {}
    for case, overrides in CASES.items():
        root = tmp_path_factory.mktemp(case)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("NLPEXP_DATA_DIR", str(data_root))
            mp.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
            run(compose([*overrides, "debug=smoke", "logger=mlflow", f"logger.mlflow.experiment={case}",
                         f"paths.output_dir={root / 'run'}", f"paths.ledger_file={root / 'ledger.jsonl'}"]))
        experiment = client.get_experiment_by_name(case).experiment_id
        (training,) = client.search_runs([experiment])
        (model,) = client.search_logged_models([experiment])
        found[case] = root / "run", training, model
    return found


def _load(mlflow_uri, model_id: str, monkeypatch):
    import mlflow.pyfunc

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    return mlflow.pyfunc.load_model(f"models:/{model_id}")


@pytest.mark.parametrize("case", CASES)
def test_the_best_model_is_a_logged_model_of_its_flavor(logged, case):
    _, training, model = logged[case]
    kind = "classifier" if case == "classification" else "summarizer"
    assert (model.name, model.model_type, model.source_run_id) == ("best_model", kind, training.info.run_id)
    assert model.status.value == "READY"


def test_a_classifier_predicts_label_names(logged, mlflow_uri, monkeypatch):
    _, _, model = logged["classification"]
    labels = _load(mlflow_uri, model.model_id, monkeypatch).predict(["a wonderful film", "dull and far too long"])
    assert len(labels) == 2 and set(labels) <= {"neg", "pos"}


@pytest.mark.parametrize("case", ["summarization_seq2seq", "summarization_decoder_only"])
def test_a_summariser_summarises_as_the_run_did(logged, mlflow_uri, monkeypatch, case):
    run_dir, _, model = logged[case]
    rows = [json.loads(line) for line in (run_dir / "predictions_validation.jsonl").read_text().splitlines()][:3]
    summaries = _load(mlflow_uri, model.model_id, monkeypatch).predict([row["dialogue"] for row in rows])
    assert summaries == [row["prediction"] for row in rows]  # the same prefix, separator and generation settings


def test_a_published_classifier_serves_labels_and_resolves_for_nlpexp(logged, mlflow_uri, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    run_dir, training, model = logged["classification"]
    registry.register(run_dir, "clf", tmp_path / "local")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    assert registry.main(["--root", str(tmp_path / "local"), "publish", "clf@latest", "--alias", "champion"]) == 0
    version = MlflowClient(mlflow_uri).get_model_version_by_alias("clf", "champion")
    assert (version.run_id, version.source) == (training.info.run_id, f"models:/{model.model_id}")  # no upload
    folder = registry.resolve("registry:mlflow:clf@champion", tmp_path / "elsewhere")
    assert (folder / "classifier.json").is_file() and (folder / "model.safetensors").is_file()

    with mlflow_serving("models:/clf@champion", mlflow_uri, tmp_path / "serve.log") as predict:
        labels = predict(["a wonderful film", "dull and far too long"])
    assert len(labels) == 2 and set(labels) <= {"neg", "pos"}
