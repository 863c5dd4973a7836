"""Task `embedding` end to end on a tiny random model: every loss, the NLI formats, STS data, and its errors."""

from __future__ import annotations

import gzip
import json
import logging

import pytest
from sentence_transformers import SentenceTransformer

from nlpexp import NlpexpError
from nlpexp.pipeline import build_task, run

SMOKE = ("task=embedding", "model=tiny_bert", "debug=smoke", "logger=none")
STS_METRICS = [f"val/{kind}_{sim}" for kind in ("pearson", "spearman") for sim in ("cosine", "euclidean", "manhattan",
                                                                                  "dot")]


@pytest.mark.parametrize("loss", ["mnrl", "cached_mnrl", "cosine", "cosent"])
def test_every_loss_trains_scores_and_saves(compose_run, tmp_path, loss):
    metrics = run(compose_run(*SMOKE, f"loss={loss}", run_dir=tmp_path / loss))
    assert set(STS_METRICS) <= set(metrics)
    assert -1.0 <= metrics["val/spearman_cosine"] <= 1.0
    assert metrics["train/samples_per_second"] > 0 and metrics["train/examples"] == 64
    assert json.loads((tmp_path / loss / "metrics.json").read_text()) == metrics
    model = SentenceTransformer(str(tmp_path / loss / "best_model"), local_files_only=True)
    assert model.encode(["A man plays guitar."]).shape == (1, 32)


def test_triplets_with_no_duplicate_batches(compose_run, data_root, tmp_path):
    metrics = run(compose_run(*SMOKE, "task.nli_format=triplets", "task.batch_sampler=no_duplicates"))
    rows = [json.loads(line) for name in ("snli/test", "mnli/validation")
            for line in gzip.open(data_root / f"{name}.jsonl.gz", "rt")][:64]
    contradicted = {r["premise"] for r in rows if r["label"] == "contradiction"}
    expected = sum(r["label"] == "entailment" and r["premise"] in contradicted for r in rows)
    assert 0 < metrics["train/examples"] == expected
    assert "val/spearman_cosine" in metrics


def test_cosine_on_sts_training_data(compose_run):
    metrics = run(compose_run(*SMOKE, "loss=cosine", "data=stsb"))
    assert metrics["train/examples"] == 48 and "val/spearman_cosine" in metrics


def test_eval_mode_scores_the_model_as_it_is(compose_run, tmp_path):
    metrics = run(compose_run(*SMOKE, "mode=eval"))
    assert set(STS_METRICS) <= set(metrics)
    assert not any(key.startswith("train/") for key in metrics)
    assert not (tmp_path / "run" / "best_model").exists()


def test_korean_sts_evaluation(compose_run):
    metrics = run(compose_run(*SMOKE, "data=kornli", "data@task.sts=korsts", "task.nli_format=entailment_pairs"))
    assert "val/spearman_cosine" in metrics


def _task(compose_run, *overrides):
    return build_task(compose_run(*SMOKE, *overrides))


@pytest.mark.parametrize("loss", ["cached_mnrl", "mnrl"])
def test_gradient_accumulation_with_in_batch_negatives_warns(compose_run, caplog, loss):
    with caplog.at_level(logging.WARNING, logger="nlpexp.task.embedding"):
        _task(compose_run, f"loss={loss}", "trainer.gradient_accumulation_steps=4")  # validated as it is built
    assert "does not add in-batch negatives" in caplog.text and "batch_size" in caplog.text


def test_no_accumulation_no_warning(compose_run, caplog):
    with caplog.at_level(logging.WARNING, logger="nlpexp.task.embedding"):
        _task(compose_run, "loss=cached_mnrl")
    assert "in-batch negatives" not in caplog.text


def test_in_batch_loss_on_scored_pairs_names_the_way_out(compose_run):
    with pytest.raises(NlpexpError, match="loss=cosine"):
        run(compose_run(*SMOKE, "loss=mnrl", "data=stsb"))


def test_a_loss_the_task_cannot_feed_is_refused_before_loading(compose_run):
    with pytest.raises(NlpexpError, match="cannot feed SoftmaxLoss"):
        _task(compose_run, "loss=softmax")  # build_task validates: nothing is loaded


def test_bad_options_are_one_line_errors(compose_run):
    with pytest.raises(NlpexpError, match="task.nli_format"):
        run(compose_run(*SMOKE, "task.nli_format=quads"))
    with pytest.raises(NlpexpError, match="task.batch_sampler"):
        run(compose_run(*SMOKE, "task.batch_sampler=group_by_label"))
