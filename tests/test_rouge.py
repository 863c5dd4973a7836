"""ROUGE for any script: Korean is scored (rouge-score's default tokenizer scores it 0), values match by hand."""

from __future__ import annotations

import pytest
from rouge_score import rouge_scorer

from nlpexp import NlpexpError
from nlpexp.task.rouge import Rouge, WordTokenizer

KO_PREDICTION = "철수가 학교에 갔다."
KO_REFERENCE = "철수가 어제 학교에 갔다."


def test_korean_matches_a_hand_computation():
    # prediction words: 철수가 학교에 갔다 (3); reference: 철수가 어제 학교에 갔다 (4).
    # unigrams: 3 shared -> P = 3/3, R = 3/4, F = 2PR/(P+R) = 6/7; the LCS is the same 3 words -> rougeL = 6/7.
    # bigrams: (철수가 학교에) (학교에 갔다) vs (철수가 어제) (어제 학교에) (학교에 갔다): 1 shared -> P = 1/2,
    # R = 1/3, F = 2/5.
    scores = Rouge(use_stemmer=False).corpus([KO_PREDICTION], [[KO_REFERENCE]])
    assert scores["rouge1"] == pytest.approx(6 / 7)
    assert scores["rouge2"] == pytest.approx(2 / 5)
    assert scores["rougeL"] == pytest.approx(6 / 7)
    assert scores["rougeLsum"] == pytest.approx(6 / 7)
    assert scores["rouge_sum"] == pytest.approx(6 / 7 + 2 / 5 + 6 / 7)


def test_the_default_rouge_score_tokenizer_drops_korean():
    """Why WordTokenizer exists: the package default keeps [a-z0-9] only."""
    default = rouge_scorer.RougeScorer(["rouge1"]).score(KO_REFERENCE, KO_PREDICTION)
    assert default["rouge1"].fmeasure == 0.0
    assert WordTokenizer().tokenize("철수가 學校 Москва, 2024!") == ["철수가", "學校", "москва", "2024"]


@pytest.mark.parametrize("use_stemmer", [False, True])
def test_english_tokens_are_the_rouge_score_defaults(use_stemmer):
    from rouge_score.tokenizers import DefaultTokenizer

    text = "The cats were SITTING on mats -- e-mail me at 3pm (won't they?) #Person1#: running_fast"
    assert WordTokenizer(use_stemmer).tokenize(text) == DefaultTokenizer(use_stemmer).tokenize(text)


def test_several_references_best_or_mean():
    # "a b" against "a b" -> rouge1 = 1; against "a c" -> P = 1/2, R = 1/2, F = 1/2.
    best = Rouge("best", use_stemmer=False).corpus(["a b"], [["a b", "a c"]])
    mean = Rouge("mean", use_stemmer=False).corpus(["a b"], [["a b", "a c"]])
    assert best["rouge1"] == pytest.approx(1.0)
    assert mean["rouge1"] == pytest.approx(0.75)
    assert mean["rouge2"] == pytest.approx(0.5)  # bigram "a b": 1 and 0


def test_corpus_score_is_the_mean_over_examples():
    scores = Rouge(use_stemmer=False).corpus(["a b", "x"], [["a b"], ["y"]])
    assert scores["rouge1"] == pytest.approx(0.5)


def test_rouge_lsum_scores_sentence_by_sentence():
    # As two sentences, the union LCS matches both; as one text, the order swap halves rougeL.
    scores = Rouge(use_stemmer=False).corpus(["b b. a a."], [["a a. b b."]])
    assert scores["rougeLsum"] == pytest.approx(1.0)
    assert scores["rougeL"] == pytest.approx(0.5)


def test_unknown_multi_reference_mode():
    with pytest.raises(NlpexpError, match="best"):
        Rouge("max")


def test_a_korean_summary_decoded_by_the_bundled_tokenizer_scores_by_hand():
    """The bundled MiniLM tokenizer decodes Hangul as decomposed jamo (NFD); scored as it is, no word would match the
    composed (NFC) reference. After NFC: the reference 철수가 어제 학교에 갔다 (4 words) comes back as
    철수가 어제 학교에 (갔다 is [UNK] to this vocabulary, and decoding drops it).
    rouge1: 3 shared unigrams, P = 3/3, R = 3/4 -> F = 6/7; rougeL: the same 3 in order -> 6/7;
    rouge2: (철수가 어제) (어제 학교에) both in the reference's 3 bigrams, P = 1, R = 2/3 -> F = 4/5."""
    import unicodedata

    from transformers import AutoTokenizer

    from nlpexp.model.weights import bundled_path

    tokenizer = AutoTokenizer.from_pretrained(bundled_path("all-MiniLM-L6-v2"))
    decoded = tokenizer.decode(tokenizer(KO_REFERENCE)["input_ids"], skip_special_tokens=True)
    assert not unicodedata.is_normalized("NFC", decoded)  # what made the score 0 before
    assert WordTokenizer().tokenize(decoded) != WordTokenizer().tokenize(unicodedata.normalize("NFC", decoded))
    scores = Rouge(use_stemmer=True).corpus([decoded], [[KO_REFERENCE]])
    assert scores["rouge1"] == pytest.approx(6 / 7) and scores["rouge1"] >= 0.8
    assert scores["rougeL"] == pytest.approx(6 / 7)
    assert scores["rouge2"] == pytest.approx(4 / 5)
    # The same either way round: references decoded (NFD) against a composed prediction.
    assert Rouge(use_stemmer=False).corpus([KO_REFERENCE], [[decoded]])["rouge1"] == pytest.approx(6 / 7)
