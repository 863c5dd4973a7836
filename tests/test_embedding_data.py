"""Shaping NLI/STS rows into embedding-loss examples, candidate sampling and TSDAE's noise: no model involved."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from nlpexp import NlpexpError
from nlpexp.data.pairs import (
    nli_ranking_examples,
    nli_scored_pairs,
    random_pairs,
    sts_scored_pairs,
    unique_texts,
    unordered_unique,
)
from nlpexp.task.augsbert.stages import gold_and_silver
from nlpexp.task.tsdae import delete_words

LABELS = ["entailment", "neutral", "contradiction"]
E, N, C = 0, 1, 2


def nli(*rows):
    premises, hypotheses, labels = zip(*rows, strict=True)
    return datasets.Dataset.from_dict({"premise": premises, "hypothesis": hypotheses, "label": labels})


ROWS = nli(("p1", "h1e", E), ("p1", "h1c", C), ("p2", "h2e", E), ("p1", "h1c2", C), ("p1", "h1e2", E),
           ("p2", "h2n", N), ("p3", "h3c", C))


def test_all_pairs_keeps_every_row_whatever_its_label():
    pairs = nli_ranking_examples(ROWS, LABELS, "all_pairs")
    assert pairs.column_names == ["anchor", "positive"]
    assert list(zip(pairs["anchor"], pairs["positive"], strict=True)) == list(
        zip(ROWS["premise"], ROWS["hypothesis"], strict=True))


def test_entailment_pairs_keep_entailed_hypotheses_only():
    pairs = nli_ranking_examples(ROWS, LABELS, "entailment_pairs")
    assert pairs["positive"] == ["h1e", "h2e", "h1e2"]


def test_triplets_pair_each_entailment_with_the_premises_first_contradiction():
    triplets = nli_ranking_examples(ROWS, LABELS, "triplets")
    assert triplets.column_names == ["anchor", "positive", "negative"]
    # p2 has no contradiction, so its entailment is dropped; p1's first contradiction serves both.
    assert triplets.to_list() == [{"anchor": "p1", "positive": "h1e", "negative": "h1c"},
                                  {"anchor": "p1", "positive": "h1e2", "negative": "h1c"}]


def test_triplets_without_any_contradiction_is_an_error():
    with pytest.raises(NlpexpError, match="no premise has both"):
        nli_ranking_examples(nli(("p", "h", E), ("q", "h", N)), LABELS, "triplets")


def test_unknown_format_and_missing_label():
    with pytest.raises(NlpexpError, match="nli_format"):
        nli_ranking_examples(ROWS, LABELS, "quads")
    with pytest.raises(NlpexpError, match="'contradiction' label"):
        nli_ranking_examples(ROWS, ["entailment", "neutral", "other"], "triplets")


def test_scored_pairs_from_nli_labels_and_sts_scores():
    scored = nli_scored_pairs(ROWS, LABELS, {"entailment": 1.0, "neutral": 0.5, "contradiction": 0.0})
    assert scored["score"] == [1.0, 0.0, 1.0, 0.0, 1.0, 0.5, 0.0]
    with pytest.raises(NlpexpError, match="neutral"):
        nli_scored_pairs(ROWS, LABELS, {"entailment": 1.0, "contradiction": 0.0})
    sts = datasets.Dataset.from_dict({"sentence1": ["a", "b"], "sentence2": ["c", "d"], "score": [5.0, 1.5]})
    assert sts_scored_pairs(sts, 5.0)["score"] == [1.0, 0.3]


def test_unique_texts_in_first_seen_order():
    assert unique_texts(ROWS, ["premise", "hypothesis"])[:4] == ["p1", "h1e", "h1c", "p2"]


def test_random_pairs_are_seeded_distinct_and_never_self_pairs():
    sentences = [f"s{i}" for i in range(20)]
    pairs = random_pairs(sentences, 3, np.random.default_rng(0))
    assert pairs == random_pairs(sentences, 3, np.random.default_rng(0))
    assert all(a != b for a, b in pairs)
    assert len({frozenset(p) for p in pairs}) == len(pairs)
    assert 20 < len(pairs) <= 60
    with pytest.raises(NlpexpError, match="at least 2"):
        random_pairs(["only"], 3, np.random.default_rng(0))


def test_unordered_unique():
    assert unordered_unique([("a", "b"), ("b", "a"), ("a", "a"), ("c", "a")]) == [("a", "b"), ("c", "a")]


def test_silver_scores_are_kept_or_cut_at_the_threshold():
    gold = datasets.Dataset.from_dict({"sentence1": ["g"], "sentence2": ["h"], "score": [1.0]})
    silver = [{"sentence1": "a", "sentence2": "b", "score": 0.7}, {"sentence1": "c", "sentence2": "d", "score": 0.2}]
    assert gold_and_silver(gold, silver, None)["score"] == pytest.approx([1.0, 0.7, 0.2])
    assert gold_and_silver(gold, silver, 0.5)["score"] == [1.0, 1.0, 0.0]
    assert gold_and_silver(gold, [], 0.5)["score"] == [1.0]


SENTENCE = "A man in a red shirt is playing the guitar on a busy street corner near the old market."


def test_deletion_noise_removes_about_the_ratio_and_keeps_a_word():
    words = len(SENTENCE.split())
    rng = np.random.default_rng(0)
    kept = [len(delete_words(SENTENCE, 0.6, rng).split()) for _ in range(200)]
    assert 0.3 < np.mean(kept) / (words + 1) < 0.5  # the tokenizer also counts the final '.'
    assert min(len(delete_words(SENTENCE, 0.99, np.random.default_rng(s)).split()) for s in range(50)) >= 1
    assert delete_words(SENTENCE, 0.0, rng) == SENTENCE


def test_deletion_noise_is_seeded_and_keeps_word_order():
    first = delete_words(SENTENCE, 0.6, np.random.default_rng(3))
    assert first == delete_words(SENTENCE, 0.6, np.random.default_rng(3))
    positions = [SENTENCE.split().index(w) for w in first.rstrip(".").split() if w in SENTENCE.split()]
    assert positions == sorted(positions)
