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
def logged(tracking_uri, tmp_path_factory, data_root):
    """case -> (run dir, the run, its logged model): one smoke run of each case, on the server."""
    from mlflow import MlflowClient

    from nlpexp.config import compose

    client, found = MlflowClient(tracking_uri), {}
    for case, overrides in CASES.items():
        root = tmp_path_factory.mktemp(case)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("NLPEXP_DATA_DIR", str(data_root))
            mp.setenv("MLFLOW_TRACKING_URI", tracking_uri)
            run(compose([*overrides, "debug=smoke", "logger=mlflow", f"logger.mlflow.experiment={case}",
                         f"paths.output_dir={root / 'run'}", f"paths.ledger_file={root / 'ledger.jsonl'}"]))
        experiment = client.get_experiment_by_name(case).experiment_id
        (training,) = client.search_runs([experiment])
        (model,) = client.search_logged_models([experiment])
        found[case] = root / "run", training, model
    return found


def _load(tracking_uri, model_id: str, monkeypatch):
    import mlflow.pyfunc

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    return mlflow.pyfunc.load_model(f"models:/{model_id}")


@pytest.mark.parametrize("case", CASES)
def test_the_best_model_is_a_logged_model_of_its_flavor(logged, case):
    _, training, model = logged[case]
    kind = "classifier" if case == "classification" else "summarizer"
    assert (model.name, model.model_type, model.source_run_id) == ("best_model", kind, training.info.run_id)
    assert model.status.value == "READY"


@pytest.mark.parametrize("case", CASES)
def test_the_logged_model_carries_the_final_figures_on_the_splits_they_were_scored_on(logged, tracking_uri, case):
    """The Models tab's metric columns: each `val/`, `test/` figure of metrics.json, recorded once (in the run and
    linked to the model) at the best checkpoint's step, on its split of the run's data, a run input too."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    run_dir, training, model = logged[case]
    finals = {key: value for key, value in json.loads((run_dir / "metrics.json").read_text()).items()
              if key.startswith(("val/", "test/"))}
    linked = client.get_logged_model(model.model_id).metrics
    assert finals and sorted(m.key for m in linked) == sorted(finals)  # each once
    data = "imdb" if case == "classification" else "dialogsum"
    for metric in linked:
        assert metric.value == pytest.approx(finals[metric.key]) and metric.run_id == training.info.run_id
        assert metric.dataset_name == f"{data}/{'validation' if metric.key.startswith('val/') else 'test'}"
        run_points = [(m.step, m.value) for m in client.get_metric_history(training.info.run_id, metric.key)]
        assert run_points == [(metric.step, metric.value)], metric.key  # the run's own point, not a second one
    assert len({m.dataset_digest for m in linked}) == 1
    (output,) = client.get_run(training.info.run_id).outputs.model_outputs
    assert (output.model_id, output.step) == (model.model_id, linked[0].step)  # the model at its figures' step
    inputs = client.get_run(training.info.run_id).inputs.dataset_inputs  # the run's "Datasets used"
    assert {(i.dataset.name, i.dataset.digest, i.tags[0].value) for i in inputs} == {
        (f"{data}/{role}", linked[0].dataset_digest, role) for role in ("validation", "test")}


def test_a_classifier_predicts_label_names(logged, tracking_uri, monkeypatch):
    _, _, model = logged["classification"]
    labels = _load(tracking_uri, model.model_id, monkeypatch).predict(["a wonderful film", "dull and far too long"])
    assert len(labels) == 2 and set(labels) <= {"neg", "pos"}


@pytest.mark.parametrize("case", ["summarization_seq2seq", "summarization_decoder_only"])
def test_a_summariser_summarises_as_the_run_did(logged, tracking_uri, monkeypatch, case):
    run_dir, _, model = logged[case]
    rows = [json.loads(line) for line in (run_dir / "predictions_validation.jsonl").read_text().splitlines()][:3]
    summaries = _load(tracking_uri, model.model_id, monkeypatch).predict([row["dialogue"] for row in rows])
    assert summaries == [row["prediction"] for row in rows]  # the same prefix, separator and generation settings


def test_a_published_classifier_serves_labels_and_resolves_for_nlpexp(logged, tracking_uri, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    run_dir, training, model = logged["classification"]
    registry.register(run_dir, "clf", tmp_path / "local")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    assert registry.main(["--root", str(tmp_path / "local"), "publish", "clf@latest", "--alias", "champion"]) == 0
    version = MlflowClient(tracking_uri).get_model_version_by_alias("clf", "champion")
    assert (version.run_id, version.source) == (training.info.run_id, f"models:/{model.model_id}")  # no upload
    folder = registry.resolve("registry:mlflow:clf@champion", tmp_path / "elsewhere")
    assert (folder / "classifier.json").is_file() and (folder / "model.safetensors").is_file()

    with mlflow_serving("models:/clf@champion", tracking_uri, tmp_path / "serve.log") as predict:
        labels = predict(["a wonderful film", "dull and far too long"])
    assert len(labels) == 2 and set(labels) <= {"neg", "pos"}
