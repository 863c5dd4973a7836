"""nlpexp.api.train: a notebook's own model and datasets through the same pipeline as run.py."""

from __future__ import annotations

import json
import logging

import pytest

from nlpexp import NlpexpError
from nlpexp.api import train
from nlpexp.config import compose, instantiate
from nlpexp.io import read_ledger
from tests.fixtures import nli_rows


@pytest.fixture
def after_a_hydra_run():
    """As in a process where run.py's main ran before: Hydra's job logging keeps nlpexp.steps off the console."""
    steps = logging.getLogger("nlpexp.steps")
    steps.propagate = False
    yield
    steps.propagate = True


def test_own_model_and_datasets_get_nlpexps_run(tmp_path, monkeypatch, after_a_hydra_run):
    import random

    monkeypatch.setenv("NLPEXP_LEDGER_DIR", str(tmp_path))
    model = instantiate(compose(["paths.output_dir=unused", "model=tiny_bert"]).model).sentence_transformer()
    rng = random.Random(1)
    train_rows, eval_rows = nli_rows(rng, 40), nli_rows(rng, 12)
    run_dir = tmp_path / "run"
    result = train(["task=sbert_nli", "debug=smoke", "trainer.max_steps=2", "trainer.eval_every_steps=1"],
                   model=model, train_dataset=train_rows, eval_dataset=eval_rows, run_dir=run_dir)

    assert result.run_dir == run_dir and json.loads((run_dir / "metrics.json").read_text()) == result.metrics
    assert "val/spearman_cosine" in result.metrics and "val/accuracy" in result.metrics
    for produced in ("best_model/modules.json", "config.yaml", "provenance.json", "tensorboard"):
        assert (run_dir / produced).exists(), produced
    assert list((run_dir / "checkpoints").glob("checkpoint-*"))
    assert "step 1/2  train/loss " in (run_dir / "run.log").read_text()
    # the run reads what it was given, and its config says so
    read = json.loads((run_dir / "provenance.json").read_text())["data_files"]
    assert str(run_dir / "given_data" / "given" / "train.jsonl") in read
    assert result.config.model.name_or_path == str(run_dir / "given_model")
    [record] = read_ledger(tmp_path / "ledger.jsonl")
    assert record["status"] == "ok" and record["run_dir"] == str(run_dir)


def test_an_object_that_is_no_model_is_one_clear_error(tmp_path):
    with pytest.raises(NlpexpError, match="model: a transformers model or a SentenceTransformer, got dict"):
        train(["task=sbert_nli"], model={}, run_dir=tmp_path / "run")


def tiny_sequence_classifier(tokenizer, bias: tuple[float, float]):
    """A BertForSequenceClassification made in the notebook: its own head, biased towards one label."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        num_labels=2))
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor(bias))
    return model


REVIEWS = [{"review": f"{'great' if i % 4 else 'awful'} film number {i}", "stars": int(i % 4 != 0)}
           for i in range(48)]
MAPPED = ["task=classification", "data=imdb", "+data.columns.text=review", "+data.columns.label=stars"]


@pytest.fixture
def tokenizer():
    from transformers import AutoTokenizer

    from nlpexp.model.weights import bundled_path

    return AutoTokenizer.from_pretrained(bundled_path("all-MiniLM-L6-v2"))


def test_eval_scores_a_given_model_with_its_own_head(tmp_path, monkeypatch, tokenizer, capsys):
    import torch

    monkeypatch.setenv("NLPEXP_LEDGER_DIR", str(tmp_path))
    model = tiny_sequence_classifier(tokenizer, bias=(0.3, -0.2))
    test_rows = REVIEWS[40:]
    result = train([*MAPPED, "mode=eval"], model=model, tokenizer=tokenizer, eval_dataset=REVIEWS[32:40],
                   test_dataset=test_rows, run_dir=tmp_path / "run")

    # the loss nlpexp reports is the given model's own, head included, on the test rows
    batch = tokenizer([r["review"] for r in test_rows], padding=True, return_tensors="pt")
    with torch.no_grad():
        own = model.eval()(**batch, labels=torch.tensor([r["stars"] for r in test_rows])).loss.item()
    assert result.metrics["test/loss"] == pytest.approx(own, rel=1e-4)
    [record] = read_ledger(tmp_path / "ledger.jsonl")
    assert record["model"] == "BertForSequenceClassification" and record["overrides"] == [*MAPPED, "mode=eval"]
    assert record["given"]["test_dataset"] == "list, 8 rows"

    # a rerun in the same run dir says, in the notebook's output, where the earlier results went
    capsys.readouterr()
    train([*MAPPED, "mode=eval"], model=model, tokenizer=tokenizer, test_dataset=test_rows, run_dir=tmp_path / "run")
    assert f"warning: run dir {tmp_path / 'run'} held an earlier attempt" in capsys.readouterr().err


def test_training_keeps_a_given_head_unless_told_to_replace_it(tmp_path, tokenizer, capsys):
    from transformers import AutoModelForSequenceClassification

    model = tiny_sequence_classifier(tokenizer, bias=(4.0, -4.0))
    data = {"train_dataset": REVIEWS[:32], "eval_dataset": REVIEWS[32:40]}
    kept = train([*MAPPED, "debug=smoke", "optimizer.lr=1e-6"], model=model, tokenizer=tokenizer, **data,
                 run_dir=tmp_path / "kept")
    best = AutoModelForSequenceClassification.from_pretrained(kept.run_dir / "best_model")
    assert best.classifier.bias.tolist() == pytest.approx([4.0, -4.0], abs=1e-3)  # trained on, not re-initialised
    assert best.config.id2label == {0: "neg", 1: "pos"}  # the data's names for transformers' LABEL_0, LABEL_1
    assert "keeping the model's own classification head" in (kept.run_dir / "run.log").read_text()

    replaced = train([*MAPPED, "debug=smoke", "task.replace_head=true"], model=model, tokenizer=tokenizer, **data,
                     run_dir=tmp_path / "replaced")
    assert (replaced.run_dir / "best_model" / "classifier.json").is_file()
    assert "warning: task.replace_head=true: the model's own classification head is replaced" in capsys.readouterr().err


def test_a_result_prints_short(tmp_path):
    from omegaconf import OmegaConf

    from nlpexp.api import RunResult

    config = OmegaConf.create({"optimized_metric": "val/accuracy", "model": {"layers": list(range(100))}})
    text = repr(RunResult(tmp_path, {"val/accuracy": 0.51234, "val/loss": 1.0, "test/accuracy": 0.5}, config))
    assert text == f"RunResult(run_dir='{tmp_path}', 3 metrics: val/accuracy=0.5123, test/accuracy=0.5)"
