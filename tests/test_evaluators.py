"""The STS and NLI evaluators encode each distinct sentence once and score as sentence-transformers' own do."""

from __future__ import annotations

import gzip
import json

import pytest
import torch
from sentence_transformers import InputExample
from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator, LabelAccuracyEvaluator
from sentence_transformers.sentence_transformer.losses import SoftmaxLoss
from torch.utils.data import DataLoader

from nlpexp.config import instantiate
from nlpexp.task.evaluators import NliAccuracyEvaluator, sts_evaluator

# "a cat sits" is on both sides and twice on the left, "a dog runs" on both sides: 5 distinct of 8.
PAIRS = {"sentence1": ["a cat sits", "a dog runs", "a cat sits", "birds fly over the sea"],
         "sentence2": ["a dog runs", "the sun is hot today", "rain falls", "a cat sits"],
         "score": [1.0, 0.2, 3.5, 4.0]}


def test_each_distinct_sentence_is_encoded_once_with_the_same_metrics(compose_run, monkeypatch):
    model = instantiate(compose_run("model=tiny_bert").model).sentence_transformer()
    encoded: list[list[str]] = []
    encode = model.encode

    def counting_encode(sentences, **kwargs):
        encoded.append(list(sentences))
        return encode(sentences, **kwargs)

    monkeypatch.setattr(model, "encode", counting_encode)
    ours = sts_evaluator(PAIRS, batch_size=2)
    metrics = ours(model)
    assert encoded == [["a cat sits", "a dog runs", "birds fly over the sea", "the sun is hot today", "rain falls"]]
    encoded.clear()
    reference = EmbeddingSimilarityEvaluator(PAIRS["sentence1"], PAIRS["sentence2"], PAIRS["score"], batch_size=2,
                                             name="", write_csv=False, similarity_fn_names=ours.similarity_fn_names)
    expected = reference(model)
    assert sum(map(len, encoded)) == 8  # what the parent encodes
    assert metrics.keys() == expected.keys() and ours.primary_metric == reference.primary_metric
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-5), key


def test_nli_accuracy_is_label_accuracy_evaluators_figure_from_fewer_encodings(compose_run, data_root, monkeypatch):
    """sentence-transformers' LabelAccuracyEvaluator (a DataLoader of InputExamples through SoftmaxLoss) gives the
    same accuracy; ours also reports the cross-entropy (sbert_nli's val/loss) and encodes a premise shared by
    several hypotheses (three in SNLI) once."""
    model = instantiate(compose_run("model=tiny_bert").model).sentence_transformer()
    rows = [json.loads(line) for line in gzip.open(data_root / "snli" / "test.jsonl.gz", "rt")]
    premises = [rows[i - i % 3]["premise"] for i in range(len(rows))]  # three hypotheses per premise, as SNLI
    hypotheses = [row["hypothesis"] for row in rows]
    gold = [["entailment", "neutral", "contradiction"].index(row["label"]) for row in rows]
    forwards = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda features, **kw: forwards.append(len(features["input_ids"])) or
                        forward(features, **kw))
    torch.manual_seed(1)  # a head whose predictions are neither all one class nor all right
    loss = SoftmaxLoss(model, model.get_embedding_dimension(), num_labels=3)
    # The gold labels, then each constant label: equal accuracies there mean equal counts of each predicted class.
    for labels in (gold, [0] * len(rows), [1] * len(rows), [2] * len(rows)):
        forwards.clear()
        ours = NliAccuracyEvaluator(premises, hypotheses, labels, loss, batch_size=8)(model)
        assert sum(forwards) == len(set(premises + hypotheses)) < 2 * len(rows)  # each distinct sentence once
        forwards.clear()
        examples = [InputExample(texts=[p, h], label=label)
                    for p, h, label in zip(premises, hypotheses, labels, strict=True)]
        theirs = LabelAccuracyEvaluator(DataLoader(examples, batch_size=8), softmax_model=loss, write_csv=False)(model)
        assert sum(forwards) == 2 * len(rows)
        assert ours["accuracy"] == pytest.approx(theirs["accuracy"], abs=1e-7)  # float32 mean vs correct / total
        assert ours["loss"] > 0
    assert 0 < theirs["accuracy"] < 1 and ours["accuracy"] != pytest.approx(1 / 3)
