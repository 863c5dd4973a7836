"""Text classification end to end on tiny random encoders: metrics, error analysis, accumulation, train/test modes."""

from __future__ import annotations

import gzip
import json
import logging

import pytest

from nlpexp import NlpexpError
from nlpexp.config import instantiate
from nlpexp.pipeline import objective, run
from tests.fixtures import read_hparams

SMOKE = ("task=classification", "data=imdb", "model=tiny_bert", "debug=smoke")
SCORES = ("accuracy", "macro_f1", "loss")
# The fixture's IMDB has 80 rows: the 8:1:1 split gives 64 / 8 / 8.
TRAIN_ROWS, TEST_ROWS = 64, 8


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_root):
    """One smoke training, with gradient accumulation, shared by the tests below."""
    from nlpexp.config import compose

    run_dir = tmp_path_factory.mktemp("classification")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NLPEXP_DATA_DIR", str(data_root))
        cfg = compose([f"paths.output_dir={run_dir}", *SMOKE, "trainer.gradient_accumulation_steps=2"])
        metrics = run(cfg)
    return cfg, run_dir, metrics


def _test_rows(cfg):
    return instantiate(cfg.data).load("test", ("text", "label"), text_columns=("text",))


def test_metrics_json_has_accuracy_macro_f1_and_loss_of_both_splits(trained):
    cfg, run_dir, metrics = trained
    written = json.loads((run_dir / "metrics.json").read_text())
    assert written == metrics
    training = {"train/runtime_s", "train/samples_per_second", "train/mean_loss", "train/eval_runtime_s",
                "time/total_s"}
    assert {f"{split}/{score}" for split in ("val", "test", "start") for score in SCORES} | training == set(written)
    for split in ("val", "test"):
        assert 0.0 <= written[f"{split}/accuracy"] <= 1.0 and 0.0 <= written[f"{split}/macro_f1"] <= 1.0
    assert objective(cfg, metrics) == written["val/accuracy"]


def test_confusion_matrix_counts_the_test_split(trained):
    cfg, run_dir, metrics = trained
    confusion = json.loads((run_dir / "confusion_matrix.json").read_text())
    assert confusion["labels"] == ["neg", "pos"] and confusion["split"] == "test"
    matrix = confusion["matrix"]
    assert sum(map(sum, matrix)) == TEST_ROWS
    assert [sum(row) for row in matrix] == [_test_rows(cfg)["label"].count(i) for i in (0, 1)]  # rows are gold
    assert (matrix[0][0] + matrix[1][1]) / TEST_ROWS == pytest.approx(metrics["test/accuracy"])
    assert (run_dir / "confusion_matrix.png").read_bytes().startswith(b"\x89PNG")


def test_misclassified_test_rows_sorted_by_confidence(trained):
    cfg, run_dir, metrics = trained
    rows = [json.loads(line) for line in (run_dir / "misclassified.jsonl").read_text().splitlines()]
    assert len(rows) == round((1 - metrics["test/accuracy"]) * TEST_ROWS)
    test_rows = _test_rows(cfg)
    for row in rows:
        assert set(row) == {"index", "text", "gold", "predicted", "confidence"}
        assert row["gold"] != row["predicted"] and 0.5 <= row["confidence"] <= 1.0
        assert row["text"] == test_rows[row["index"]]["text"]
        assert row["gold"] == ["neg", "pos"][test_rows[row["index"]]["label"]]
    confidences = [row["confidence"] for row in rows]
    assert confidences == sorted(confidences, reverse=True)


def test_accumulation_effective_batch_is_logged_and_applied(trained):
    _, run_dir, _ = trained
    hparams = read_hparams(run_dir / "tensorboard")
    assert hparams["trainer.batch_size"] == 8 and hparams["trainer.gradient_accumulation_steps"] == 2
    assert hparams["trainer.effective_batch_size"] == 16
    # 4 optimizer steps of 16 rows are one pass over the 64 training rows.
    state = json.loads((run_dir / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and state["epoch"] == pytest.approx(4 * 16 / TRAIN_ROWS)


def test_mode_test_on_the_best_model_reproduces_its_metrics(trained, compose_run, tmp_path):
    _, run_dir, metrics = trained
    again = run(compose_run(*SMOKE, "mode=test", f"model.name_or_path={run_dir / 'best_model'}",
                            run_dir=tmp_path / "test"))
    for key in (f"{split}/{score}" for split in ("val", "test") for score in SCORES):
        assert again[key] == pytest.approx(metrics[key], abs=1e-6), key
    assert (tmp_path / "test" / "misclassified.jsonl").read_text() == (run_dir / "misclassified.jsonl").read_text()


def test_mode_eval_loads_a_checkpoint_folder(trained, compose_run):
    _, run_dir, metrics = trained
    state = json.loads((run_dir / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    again = run(compose_run(*SMOKE, "mode=eval", f"model.name_or_path={state['best_model_checkpoint']}"))
    assert again["test/accuracy"] == pytest.approx(metrics["test/accuracy"])


def test_evaluating_an_untrained_encoder_names_the_fix(compose_run):
    with pytest.raises(NlpexpError, match="model.name_or_path=<run>/best_model"):
        run(compose_run(*SMOKE, "mode=test"))


@pytest.mark.parametrize("overrides,message", [
    (["data=stsb"], r"needs labelled data with data.label_names"),
    (["model.pooling=lasttoken"], r"model.pooling in \('mean', 'cls', 'max'\)"),
    (["loss=softmax"], r"takes no loss; drop loss="),
])
def test_impossible_combinations_are_refused_before_loading(compose_run, tmp_path, overrides, message):
    with pytest.raises(NlpexpError, match=message):
        run(compose_run(*SMOKE, *overrides))
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_labels_of_model_and_data_must_agree(trained, compose_run):
    _, run_dir, _ = trained
    with pytest.raises(NlpexpError, match=r"trained on labels \['neg', 'pos'\]"):
        run(compose_run(*SMOKE, "mode=test", f"model.name_or_path={run_dir / 'best_model'}",
                        "data.label_names=[bad,good]"))


def test_modernbert_head_trains_in_bf16_and_reloads(compose_run, tmp_path):
    tiny = ("task=classification", "data=imdb", "model=tiny_modernbert", "debug=smoke", "trainer.precision=bf16",
            "logger=none")
    trained = run(compose_run(*tiny, run_dir=tmp_path / "train"))
    again = run(compose_run(*tiny, "mode=test", f"model.name_or_path={tmp_path / 'train' / 'best_model'}",
                            run_dir=tmp_path / "test"))
    assert again["test/accuracy"] == trained["test/accuracy"]


def test_any_csv_with_text_and_label_columns(compose_run, tmp_path):
    for split in ("train", "test"):
        lines = ["review,sentiment"] + [f"review number {i} of {split},{('negative', 'positive')[i % 2]}"
                                        for i in range(20)]
        (tmp_path / "data" / "imdb").mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "imdb" / f"{split}.csv").write_text("\n".join(lines) + "\n")
    metrics = run(compose_run(*SMOKE, "logger=none", f"data.root={tmp_path / 'data'}", "+data.columns.text=review",
                              "+data.columns.label=sentiment", "data.label_names=[negative,positive]"))
    assert "test/accuracy" in metrics
    labels = json.loads((tmp_path / "run" / "best_model" / "classifier.json").read_text())["label_names"]
    assert labels == ["negative", "positive"]


def test_nsmc_validates_on_a_share_of_train_and_drops_empty_reviews(compose_run, data_root):
    nsmc = instantiate(compose_run("task=classification", "data=nsmc").data)
    assert nsmc.roles == ["train", "validation", "test"]
    parts = {role: nsmc.load(role, ("text", "label"), text_columns=("text",)) for role in nsmc.roles}
    with gzip.open(data_root / "nsmc" / "train.jsonl.gz", "rt") as f:
        train_file = [json.loads(line) for line in f]
    kept = sum(1 for row in train_file if row["text"])
    assert len(parts["train"]) + len(parts["validation"]) == kept == len(train_file) - 1
    assert len(parts["validation"]) in (3, 4)  # 10% of 40 rows, less the empty one if it fell there
    assert len(parts["test"]) == 39 and all(parts["test"]["text"])


def test_a_second_identical_run_reuses_the_tokenised_splits(compose_run, tmp_path, monkeypatch, caplog):
    cache = tmp_path / "cache"
    monkeypatch.setenv("NLPEXP_CACHE_DIR", str(cache))
    caplog.set_level(logging.INFO, logger="nlpexp.data.cache")
    run(compose_run(*SMOKE, "logger=none", run_dir=tmp_path / "first"))
    files = sorted(cache.glob("*.arrow"))
    assert len(files) == 3  # train, validation, test
    caplog.clear()
    run(compose_run(*SMOKE, "logger=none", run_dir=tmp_path / "second"))
    assert caplog.text.count("reused cache") == 3 and "cached it in" not in caplog.text
    assert sorted(cache.glob("*.arrow")) == files
    run(compose_run(*SMOKE, "logger=none", "model.max_seq_length=32", run_dir=tmp_path / "shorter"))
    assert len(list(cache.glob("*.arrow"))) == 6


@pytest.mark.slow
def test_bundled_minilm_trains(compose_run):
    metrics = run(compose_run("task=classification", "data=imdb", "model=minilm", "debug=smoke", "logger=none"))
    assert 0.0 <= metrics["test/accuracy"] <= 1.0
