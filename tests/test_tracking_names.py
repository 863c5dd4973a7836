"""One set of metric names in every sink, and MLflow lineage, against a real `mlflow server` on 127.0.0.1.

One smoke training logs to MLflow, TensorBoard and an offline W&B run at once; each sink is read back from what it
wrote (the server's API, the event files, the offline .wandb file) and compared key by key, step by step.
"""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import pytest

from nlpexp import registry
from nlpexp.metrics import tracker_summary
from nlpexp.tb import read_tags
from tests.fixtures import read_hparams
from tests.services import mlflow_serving, run_logged_to_mlflow

SMOKE = ("task=sbert_nli", "model=tiny_bert", "debug=smoke", "logger=[mlflow,tensorboard,wandb]",
         "logger.wandb.mode=offline")


@pytest.fixture(scope="module")
def tracked(tracking_uri, tmp_path_factory, data_root):
    """The smoke run, in an experiment of its own on the test process's MLflow server (tests/services.py)."""
    root = tmp_path_factory.mktemp("names")
    metrics, client, found = run_logged_to_mlflow(tracking_uri, root, data_root, SMOKE, experiment="names")
    return root / "run", metrics, client, found


def mlflow_series(client, found) -> dict[str, list[tuple[int, float]]]:
    return {key: [(m.step, m.value) for m in client.get_metric_history(found.info.run_id, key)]
            for key in found.data.metrics}


def test_mlflow_draws_each_series_at_its_steps_and_the_finals_under_their_own_names(tracked):
    run_dir, metrics, client, found = tracked
    series = mlflow_series(client, found)
    assert [step for step, _ in series["train/loss"]] == [1, 2, 3, 4]  # debug=smoke logs every step, nothing after
    assert [step for step, _ in series["train/learning_rate"]] == [1, 2, 3, 4]
    assert [step for step, _ in series["eval/spearman_cosine"]] == [0, 2, 4]  # the start, each evaluation
    assert series["start/spearman_cosine"] == [(0, pytest.approx(metrics["start/spearman_cosine"]))]
    for key in (k for k in metrics if k.startswith("start/")):  # every eval/ curve starts at the starting model
        assert series[f"eval/{key[6:]}"][0] == (0, pytest.approx(metrics[key])), key
    summary = tracker_summary(metrics)  # metrics.json's keys, start/ drawn at step 0 instead
    assert set(summary) == {k for k in metrics if not k.startswith("start/")} and "train/mean_loss" in summary
    best = int(Path(json.loads(next((run_dir / "checkpoints").rglob("trainer_state.json")).read_text())
                    ["best_model_checkpoint"]).name.rsplit("-", 1)[-1])
    assert best == 2  # the smoke run's best checkpoint is not its last step: the steps below tell them apart
    for key, value in summary.items():  # one point each beside (not in) the series: val/, test/ at the best step
        assert series[key] == [(best if key[:4] in ("val/", "test") else 4, pytest.approx(value))], key
        if key.startswith("val/"):  # the best checkpoint's scores are its evaluation's, at its step
            assert (best, pytest.approx(value)) in series[f"eval/{key[4:]}"], key
    assert not {k for k in series if k.startswith("start/")} - {f"start/{k[5:]}" for k in series if k[:5] == "eval/"}


def test_tensorboard_and_wandb_record_the_same_keys_at_the_same_steps(tracked):
    run_dir, metrics, client, found = tracked
    points = mlflow_series(client, found)
    series = {key: [step for step, _ in values] for key, values in points.items()}
    tags = read_tags(run_dir / "tensorboard")
    assert {key: [step for step, _ in values] for key, values in tags.items()} == series
    for key, values in tags.items():  # the same values too (TensorBoard keeps float32)
        assert [v for _, v in values] == pytest.approx([v for _, v in points[key]], rel=1e-6), key
    assert not [t for t in tags if t.startswith(("hparam/", "Parameters/", "Loss/"))]  # no repeats, no histograms
    assert read_hparams(run_dir / "tensorboard")["optimizer.lr"] == float(found.data.params["optimizer.lr"])

    history, summary = read_wandb(run_dir / "wandb")
    steps: dict[str, list[int]] = {}
    for step, values in history:
        for key in values:
            steps.setdefault(key, []).append(step)
    finals = tracker_summary(metrics)
    assert steps == {key: value for key, value in series.items() if key not in finals}
    starts = {k[6:]: v for k, v in metrics.items() if k.startswith("start/")}
    assert starts and dict(history)[0] == pytest.approx({**{f"start/{k}": v for k, v in starts.items()},
                                                          **{f"eval/{k}": v for k, v in starts.items()}})
    for key, value in finals.items():
        assert summary[key] == pytest.approx(value), key


def test_a_run_carries_its_params_from_the_start_its_lineage_tags_and_artifacts(tracked, tracking_uri, tmp_path):
    run_dir, _, client, found = tracked
    tags = found.data.tags
    assert found.info.run_name == "sbert_nli" and found.info.status == "FINISHED"
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    assert tags["mlflow.source.git.commit"] == commit and tags["nlpexp.git_dirty"] in ("true", "false")
    assert tags["mlflow.user"] and tags["nlpexp.host"] and tags["mlflow.source.name"]
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"config.yaml", "metrics.json", "provenance.json"} <= artifacts  # the model: its logged model
    provenance = json.loads(Path(client.download_artifacts(found.info.run_id, "provenance.json", str(tmp_path)))
                            .read_text())
    assert provenance["git"]["commit"] == commit and provenance["data_files"]

    from nlpexp.logger import MlflowLogger

    logger = MlflowLogger(run_dir=str(tmp_path), experiment="params", tracking_uri=tracking_uri)
    logger.start({"seed": 3, "mode": "train", "task": {"_target_": "x.ClassificationTask"},
                  "optimizer": {"lr": 0.01, "_target_": "torch.optim.AdamW"}})
    running = client.get_run(logger.run_id)  # before any step: the params are there while it runs
    assert running.info.status == "RUNNING" and running.info.run_name == "classification"
    assert running.data.params["optimizer.lr"] == "0.01" and running.data.params["seed"] == "3"
    logger.finish({"optimizer.lr": 0.01, "trainer.max_steps": 4}, {})
    assert client.get_run(running.info.run_id).data.params["trainer.max_steps"] == "4"


def test_a_published_version_points_at_the_training_run_and_serves(tracked, tracking_uri, tmp_path, monkeypatch,
                                                                    capsys):
    import mlflow.pyfunc

    run_dir, _, client, found = tracked
    local = tmp_path / "local"
    registry.register(run_dir, "names", local)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    assert registry.main(["--root", str(local), "publish", "names@latest", "--alias", "champion"]) == 0
    assert capsys.readouterr().out.strip() == "registry:mlflow:names@v1"
    version = client.get_model_version_by_alias("names", "champion")
    (logged,) = client.search_logged_models([found.info.experiment_id])
    assert version.run_id == found.info.run_id and version.source == f"models:/{logged.model_id}"
    assert logged.source_run_id == found.info.run_id
    assert client.get_experiment_by_name("nlpexp-registry") is None  # no second upload, no empty source run

    model = mlflow.pyfunc.load_model("models:/names@champion")
    assert len(model.predict(["a man plays a guitar", "a dog runs"])) == 2
    folder = registry.resolve("registry:mlflow:names@champion", tmp_path / "elsewhere")
    assert (folder / "modules.json").is_file() and (folder / "nli_head.json").is_file()  # nlpexp reloads it whole

    with mlflow_serving("models:/names@champion", tracking_uri, tmp_path / "serve.log") as predict:
        predictions = predict(["a man plays a guitar", "a dog runs"])
    assert len(predictions) == 2 and len(predictions[0]) == 32  # tiny_bert's embedding width


def read_wandb(wandb_dir: Path) -> tuple[list[tuple[int, dict]], dict]:
    """(step, values) of each history row and the summary of the one offline run under `wandb_dir`, read from its
    .wandb file (LevelDB-style log: 7-byte header, 32 KiB blocks of records checksum/length/type/data)."""
    from wandb.proto import wandb_internal_pb2

    (path,) = wandb_dir.rglob("run-*.wandb")
    data = path.read_bytes()[7:]
    block, records, pending, offset = 32768, [], b"", 0
    while offset + 7 <= len(data):
        room = block - (offset + 7) % block  # the header counts in the first block
        if room < 7:
            offset += room
            continue
        _, length, kind = struct.unpack("<IHB", data[offset:offset + 7])
        pending += data[offset + 7:offset + 7 + length]
        offset += 7 + length
        if kind in (1, 4):  # full, last
            records.append(pending)
            pending = b""
        elif kind == 0:
            break
    history, summary = [], {}
    for raw in records:
        record = wandb_internal_pb2.Record.FromString(raw)
        kind = record.WhichOneof("record_type")
        items = record.history.item if kind == "history" else record.summary.update if kind == "summary" else []
        values = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}
        if kind == "history":
            history.append((record.history.step.num, {k: v for k, v in values.items() if not k.startswith("_")}))
        elif kind == "summary":
            summary.update(values)
    return history, summary


def test_where_a_run_was_recorded_is_no_param(tmp_path):
    """The overridden settings a run is compared by (a trial's sampled params) leave out where it ran and where
    it was recorded: paths.*, logger.* (a tracking URI is no hyperparameter)."""
    from hydra.core.hydra_config import HydraConfig

    from nlpexp.config import compose
    from nlpexp.observers import _overridden

    overrides = [f"paths.output_dir={tmp_path}", "optimizer.lr=0.01", "logger=mlflow",
                 "logger.mlflow.tracking_uri=http://127.0.0.1:1"]
    cfg = compose(overrides, with_hydra=True)
    HydraConfig.instance().set_config(cfg)
    try:
        assert _overridden(cfg) == {"optimizer.lr": 0.01}
    finally:
        HydraConfig.instance().cfg = None
