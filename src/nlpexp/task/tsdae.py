"""TSDAE (seed 004): unsupervised sentence embeddings from unlabelled text by denoising auto-encoding.

Each sentence loses a share of its words; a decoder that shares the encoder's weights rebuilds the original
from the embedding of the damaged copy (CLS pooling). The starting model is scored with the same pooling (as every
task's starting model: `start/*` beside `val/*` in metrics.json).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from typing import Annotated

import numpy as np

from nlpexp.data.pairs import unique_texts
from nlpexp.rules import NAME, ListOf, Num, Pooling
from nlpexp.task.sts import StsScoredTask


class TsdaeTask(StsScoredTask):
    name = "tsdae"
    losses = ("sentence_transformers.sentence_transformer.losses.DenoisingAutoEncoderLoss",)
    loss_choices = "denoising"

    def __init__(self, *, text_columns: Annotated[Sequence[str], ListOf(NAME, min_length=1)],
                 deletion_ratio: Annotated[float, Num(0, 1, hi_open=True)] = 0.6, pooling: Pooling = "cls", **kwargs):
        super().__init__(**kwargs)
        self.text_columns = list(text_columns)
        self.deletion_ratio = deletion_ratio
        self.pooling = pooling

    def load_model(self):
        spec = copy.copy(self.model_spec)
        spec.pooling = self.pooling  # the pooling TSDAE trains (and the starting model is scored) with
        return spec.sentence_transformer()

    def examples(self):
        import datasets

        rows = self.data.load("train", self.text_columns, text_columns=self.text_columns)
        sentences = unique_texts(rows, self.text_columns)
        rng = np.random.default_rng(self.data.seed)
        # The noise is drawn once, up front: the same seed gives the same damaged copies.
        damaged = [delete_words(s, self.deletion_ratio, rng) for s in sentences]
        return datasets.Dataset.from_dict({"damaged": damaged, "original": sentences})


def delete_words(text: str, ratio: float, rng: np.random.Generator) -> str:
    """Drop each word with probability `ratio`, keeping at least one (TSDAE's deletion noise)."""
    tokenizer, detokenizer = _nltk_words()
    words = tokenizer.tokenize(text)
    if not words:
        return text
    keep = rng.random(len(words)) >= ratio
    if not keep.any():
        keep[rng.integers(len(words))] = True
    return detokenizer.detokenize([w for w, kept in zip(words, keep, strict=True) if kept])


@functools.cache
def _nltk_words():
    # word_tokenize would first split sentences with punkt, a download; its word-level part needs none.
    from nltk.tokenize import NLTKWordTokenizer
    from nltk.tokenize.treebank import TreebankWordDetokenizer

    return NLTKWordTokenizer(), TreebankWordDetokenizer()
