"""ROUGE with the rouge-score package, for any script (the `evaluate` hub metric is not reachable offline).

rouge-score's default tokenizer keeps only [a-z0-9], so a Korean (or Chinese, Russian, ...) summary becomes
an empty token list and scores 0. `WordTokenizer` takes words as runs of letters and digits of any script
instead; on English text it gives exactly the default tokens. Predictions and references are put in Unicode NFC
first: tokenizers such as the bundled MiniLM's decode Hangul as decomposed jamo (NFD), whose code points are not
letters of the word pattern, so a summary decoded from its own reference would otherwise score 0.

Scores are F-measures in [0, 1], averaged over the examples; `rouge_sum` = rouge1 + rouge2 + rougeL (the
seeds' model-selection metric). rougeLsum scores sentence by sentence (split after . ! ? and at line breaks).
With several references per example (DialogSum test has three) `multi_reference` says how they combine:
- `best`: per metric, the reference that scores highest (what rouge-score's `score_multi` does);
- `mean`: the average over the references.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from nltk.stem.porter import PorterStemmer
from rouge_score import rouge_scorer, tokenizers

from nlpexp import NlpexpError

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
MULTI_REFERENCE = ("best", "mean")
_WORD = re.compile(r"[^\W_]+")  # letters and digits of any script
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")


class WordTokenizer(tokenizers.Tokenizer):
    """Lower-cased words of any script; Porter stemming (English) of ASCII words longer than 3 characters."""

    def __init__(self, use_stemmer: bool = False):
        self._stemmer = PorterStemmer() if use_stemmer else None

    def tokenize(self, text: str) -> list[str]:
        words = _WORD.findall(text.lower())
        if self._stemmer is None:
            return words
        return [self._stemmer.stem(w) if len(w) > 3 and w.isascii() else w for w in words]


class Rouge:
    def __init__(self, multi_reference: str = "best", use_stemmer: bool = True):
        if multi_reference not in MULTI_REFERENCE:
            raise NlpexpError(f"task.multi_reference must be one of {MULTI_REFERENCE}, got {multi_reference!r}")
        self.multi_reference = multi_reference
        self._scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=WordTokenizer(use_stemmer))

    def example(self, prediction: str, references: Sequence[str]) -> dict[str, float]:
        """F-measure of each ROUGE type for one prediction against its reference(s)."""
        prediction = _one_sentence_per_line(prediction)
        scores = [self._scorer.score(_one_sentence_per_line(ref), prediction) for ref in references]
        combine = max if self.multi_reference == "best" else _mean
        return {t: combine([s[t].fmeasure for s in scores]) for t in ROUGE_TYPES}

    def corpus(self, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
        """Mean over the examples of each ROUGE type, and rouge_sum."""
        if len(predictions) != len(references) or not predictions:
            raise ValueError(f"{len(predictions)} predictions for {len(references)} reference sets")
        per_example = [self.example(p, refs) for p, refs in zip(predictions, references, strict=True)]
        scores = {t: _mean([e[t] for e in per_example]) for t in ROUGE_TYPES}
        scores["rouge_sum"] = scores["rouge1"] + scores["rouge2"] + scores["rougeL"]
        return scores


def _one_sentence_per_line(text: str) -> str:
    """NFC (composed Hangul syllables, accented letters as one code point), one sentence per line."""
    return _SENTENCE_END.sub("\n", unicodedata.normalize("NFC", text).strip())


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)
