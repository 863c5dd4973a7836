"""SBERT-NLI end to end on a tiny random model: metrics, TensorBoard tags, reloadable model and head."""

from __future__ import annotations

import json

import pytest
import torch

from nlpexp.pipeline import objective, run
from nlpexp.tb import read_tags
from nlpexp.trainer import TrainerSettings

SMOKE = ("task=sbert_nli", "model=tiny_bert", "debug=smoke")
SEED_TAGS = {"Loss/Train_Batch", "Loss/Train_Epoch", "Loss/Val_Epoch", "Accuracy/Train_Epoch",
             "Accuracy/Val_Epoch", "Learning_Rate"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_root):
    """One smoke training shared by the tests below."""
    from nlpexp.config import compose

    run_dir = tmp_path_factory.mktemp("sbert_nli")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NLPEXP_DATA_DIR", str(data_root))
        cfg = compose([f"paths.output_dir={run_dir}", f"paths.ledger_file={run_dir / 'ledger.jsonl'}", *SMOKE,
                       "logger.tensorboard.seed000_tags=true", "logger.tensorboard.histograms=true"])
        metrics = run(cfg)
    return cfg, run_dir, metrics


def test_metrics_json_has_the_flat_split_keys(trained):
    cfg, run_dir, metrics = trained
    written = json.loads((run_dir / "metrics.json").read_text())
    assert written == metrics
    for key in ("val/spearman_cosine", "val/pearson_cosine", "val/spearman_euclidean", "val/spearman_manhattan",
                "val/spearman_dot", "val/accuracy", "val/loss"):
        assert key in written
    assert -1.0 <= written["val/spearman_cosine"] <= 1.0 and 0.0 <= written["val/accuracy"] <= 1.0
    assert objective(cfg, metrics) == written["val/spearman_cosine"]
    assert (run_dir / "config.yaml").is_file()


def test_the_starting_model_is_scored_before_training(trained, capsys):
    """start/<metric>: the model as training got it (the head untrained), in metrics.json, the ledger and the
    console table with the change."""
    from nlpexp.io import read_ledger
    from nlpexp.metrics import format_table

    _, run_dir, metrics = trained
    for name in ("spearman_cosine", "pearson_cosine", "accuracy", "loss"):
        assert f"start/{name}" in metrics
    assert metrics["start/pearson_cosine"] != metrics["val/pearson_cosine"]  # (4 steps may keep the ranks)
    assert read_ledger(run_dir / "ledger.jsonl")[-1]["metrics"] == metrics
    row = next(line for line in format_table(metrics).splitlines() if line.startswith("val/spearman_cosine "))
    change = metrics["val/spearman_cosine"] - metrics["start/spearman_cosine"]
    assert row.split()[1:] == [f"{metrics['val/spearman_cosine']:.4f}", f"{metrics['start/spearman_cosine']:.4f}",
                               f"{change:+.4f}"]


def test_evaluate_start_false_skips_it(compose_run):
    metrics = run(compose_run(*SMOKE, "logger=none", "trainer.evaluate_start=false"))
    assert "val/spearman_cosine" in metrics and not any(k.startswith("start/") for k in metrics)


def test_tensorboard_carries_the_seed_tags_and_task_metrics(trained):
    _, run_dir, _ = trained
    tags = read_tags(run_dir / "tensorboard")
    assert SEED_TAGS <= set(tags)
    assert "val/spearman_cosine" in tags
    assert any(t.startswith("Parameters/") for t in tags)
    assert len(tags["Loss/Train_Batch"]) == 4  # logging_steps=1, max_steps=4


def test_best_model_reloads_with_its_classifier(trained):
    from nlpexp.task.sbert_nli import load_nli_classifier

    _, run_dir, metrics = trained
    model, loss, labels = load_nli_classifier(run_dir / "best_model")
    assert labels == ["entailment", "neutral", "contradiction"]
    u = model.encode(["A man is playing guitar."], convert_to_tensor=True)
    logits = loss.classifier(torch.cat([u, u, torch.abs(u - u)], dim=1))
    assert logits.shape == (1, 3)
    checkpoint = sorted((run_dir / "checkpoints").glob("checkpoint-*"))[0]
    assert (checkpoint / "nli_head.safetensors").is_file()


def test_best_model_evaluates_to_the_reported_validation_numbers(trained, compose_run):
    """mode=eval of best_model/ (with its head) reproduces the trained run's validation metrics."""
    _, run_dir, metrics = trained
    again = run(compose_run(*SMOKE, "mode=eval", f"model.name_or_path={run_dir / 'best_model'}",
                            "model.random_init=null", "model.tokenizer=null"))
    for key in ("val/spearman_cosine", "val/accuracy"):
        assert again[key] == pytest.approx(metrics[key], abs=1e-5)


def test_same_seed_same_metrics(trained, compose_run, tmp_path):
    _, _, metrics = trained
    again = run(compose_run(*SMOKE, run_dir=tmp_path / "again"))
    assert again["val/spearman_cosine"] == pytest.approx(metrics["val/spearman_cosine"], abs=1e-6)


def test_missing_optimized_metric_lists_the_existing_ones(trained):
    from nlpexp import NlpexpError

    cfg, _, metrics = trained
    cfg = cfg.copy()
    cfg.optimized_metric = "val/nope"
    with pytest.raises(NlpexpError, match="val/spearman_cosine"):
        objective(cfg, metrics)


def test_tensorboard_helpers_list_and_serve_the_run(trained, capsys):
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from nlpexp.tb import main as tb_main
    from tests import forkserver

    _, run_dir, _ = trained
    tb_main(["list", str(run_dir)])
    assert "Loss/Train_Batch" in capsys.readouterr().out
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = forkserver.popen([sys.executable, "-m", "nlpexp.tb", "serve", str(run_dir), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, body = time.time() + 60, ""
        while time.time() < deadline and not body:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=2).read().decode()
            except OSError:
                time.sleep(0.5)
        assert run_dir.name in body
    finally:
        server.kill()
        server.wait()


def tiny_sentence_model(layers: int = 2):
    from nlpexp.model import ModelSpec

    return ModelSpec(name="tiny", tokenizer="bundled:all-MiniLM-L6-v2", max_seq_length=32,
                     random_init={"model_type": "bert", "hidden_size": 32, "num_hidden_layers": layers,
                                  "num_attention_heads": 2, "intermediate_size": 64}).sentence_transformer()


@pytest.mark.parametrize("trained_layers", [None, 0, 1, 3])
def test_trained_layers_freezes_the_embeddings_and_the_layers_below(trained_layers):
    from nlpexp.task.sbert_nli import freeze_lower_layers

    model = tiny_sentence_model(layers=3)
    freeze_lower_layers(model, trained_layers)
    bert = model[0].auto_model
    trains = [all(p.requires_grad for p in layer.parameters()) for layer in bert.encoder.layer]
    frozen = [not any(p.requires_grad for p in layer.parameters()) for layer in bert.encoder.layer]
    kept = 3 if trained_layers is None else trained_layers
    assert trains == [i >= 3 - kept for i in range(3)] and frozen == [i < 3 - kept for i in range(3)]
    assert all(p.requires_grad for p in bert.embeddings.parameters()) == (trained_layers is None)


def test_more_trained_layers_than_the_model_has_is_one_error_line():
    from nlpexp import NlpexpError
    from nlpexp.task.sbert_nli import freeze_lower_layers

    with pytest.raises(NlpexpError, match=r"task.trained_layers=3, but the model has 2 layers"):
        freeze_lower_layers(tiny_sentence_model(), 3)


def test_a_frozen_encoder_keeps_its_sts_scores_while_the_head_learns(compose_run, tmp_path):
    """task.trained_layers=0: the SoftmaxLoss head alone trains; the sentence embeddings, and so every STS
    figure, stay exactly the starting model's, while the head's accuracy moves off the untrained one."""
    metrics = run(compose_run(*SMOKE, "logger=none", "task.trained_layers=0", "trainer.max_steps=8"))
    for name in ("spearman_cosine", "pearson_cosine", "spearman_dot"):
        assert metrics[f"val/{name}"] == metrics[f"start/{name}"]
    assert metrics["val/loss"] != metrics["start/loss"]
    trained_all = run(compose_run(*SMOKE, "logger=none", "task.trained_layers=null", "trainer.max_steps=8",
                                  run_dir=tmp_path / "all_layers"))
    assert trained_all["val/pearson_cosine"] != trained_all["start/pearson_cosine"]


def test_evaluate_skips_a_role_that_no_data_of_the_run_has(caplog, tmp_path):
    """The main job's SNLI has no test split and STSb's is held out: nothing says "evaluating on test"."""
    import logging

    from nlpexp.task import Task

    class ValidationOnly:
        name = "nli"

        def has(self, role: str) -> bool:
            return role == "validation"

    class Scored(Task):
        def setup(self) -> None: ...

        def train(self) -> None: ...

        def score(self, role: str) -> dict[str, float]:
            return {f"{role}/accuracy": 1.0} if self.data.has(role) else {}

    task = Scored(monitor="val/accuracy", model=None, data=ValidationOnly(), trainer=TrainerSettings(),
                  optimizer=None, scheduler=None, run_dir=tmp_path)
    with caplog.at_level(logging.INFO, logger="nlpexp.task"):
        assert task.evaluate("test") == {}
        assert task.evaluate("validation") == {"validation/accuracy": 1.0}
    assert [r.getMessage() for r in caplog.records] == ["evaluating on validation"]
