"""nlpexp.api.train: a notebook's own model and datasets through the same pipeline as run.py."""

from __future__ import annotations

import json
import logging

import pytest

from nlpexp import ledger
from nlpexp.api import train
from nlpexp.config import compose, instantiate
from nlpexp.errors import NlpexpError
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
    assert "step 1/2  loss " in (run_dir / "run.log").read_text()
    # the run reads what it was given, and its config says so
    read = json.loads((run_dir / "provenance.json").read_text())["data_files"]
    assert str(run_dir / "given_data" / "given" / "train.jsonl") in read
    assert result.config.model.name_or_path == str(run_dir / "given_model")
    [record] = ledger.read(tmp_path / "ledger.jsonl")
    assert record["status"] == "ok" and record["run_dir"] == str(run_dir)


def test_an_object_that_is_no_model_is_one_clear_error(tmp_path):
    with pytest.raises(NlpexpError, match="model: a transformers model or a SentenceTransformer, got dict"):
        train(["task=sbert_nli"], model={}, run_dir=tmp_path / "run")
