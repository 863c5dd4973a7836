"""The STS evaluator encodes each distinct sentence once and scores as sentence-transformers' own does."""

from __future__ import annotations

import pytest
from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

from nlpexp.config import instantiate
from nlpexp.task.evaluators import sts_evaluator

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
