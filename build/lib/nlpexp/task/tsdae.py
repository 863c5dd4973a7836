"""TSDAE (seed 004): unsupervised sentence embeddings from unlabelled text by denoising auto-encoding.

Each sentence loses a share of its words; a decoder that shares the encoder's weights rebuilds the original
from the embedding of the damaged copy (CLS pooling). The starting model is scored with the same pooling, so
that the gain is read off metrics.json (`val/start_*` beside `val/*`).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence

import numpy as np
from sentence_transformers.sentence_transformer.losses import DenoisingAutoEncoderLoss

from nlpexp.data.pairs import unique_texts
from nlpexp.errors import NlpexpError
from nlpexp.task.embedding import SentenceEmbeddingTask

START_PREFIX = "start_"


class TsdaeTask(SentenceEmbeddingTask):
    def __init__(self, *, text_columns: Sequence[str], deletion_ratio: float = 0.6, pooling: str = "cls", **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= deletion_ratio < 1.0:
            raise NlpexpError(f"task.deletion_ratio must be in [0, 1), got {deletion_ratio}")
        if not text_columns:
            raise NlpexpError("task.text_columns must name the data's text column(s), e.g. [premise, hypothesis]")
        self.text_columns = list(text_columns)
        self.deletion_ratio = deletion_ratio
        self.pooling = pooling
        self.start_metrics: dict[str, float] = {}

    def check_loss(self) -> None:
        super().check_loss()
        if not issubclass(self.loss_factory.func, DenoisingAutoEncoderLoss):
            raise NlpexpError(f"task tsdae trains with loss=denoising, got {self.loss_factory.func.__name__}")

    def build_model(self):
        spec = copy.copy(self.model_spec)
        spec.pooling = self.pooling
        return spec.sentence_transformer()

    def prepare_training(self) -> None:
        import datasets

        rows = self.data.load("train", self.text_columns, text_columns=self.text_columns)
        sentences = unique_texts(rows, self.text_columns)
        rng = np.random.default_rng(self.data.seed)
        # The noise is drawn once, up front: the same seed gives the same damaged copies.
        damaged = [delete_words(s, self.deletion_ratio, rng) for s in sentences]
        self.train_set = datasets.Dataset.from_dict({"damaged": damaged, "original": sentences})
        self.start_metrics = {_start_key(k): v for k, v in self._evaluate("validation").items()}

    def train(self) -> None:
        self.fit(self.train_set)

    def evaluate(self, role: str) -> dict[str, float]:
        metrics = super().evaluate(role)
        return {**metrics, **self.start_metrics} if role == "validation" else metrics


def delete_words(text: str, ratio: float, rng: np.random.Generator) -> str:
    """Drop each word with probability `ratio`, keeping at least one (TSDAE's deletion noise)."""
    words = _word_tokenizer().tokenize(text)
    if not words:
        return text
    keep = rng.random(len(words)) >= ratio
    if not keep.any():
        keep[rng.integers(len(words))] = True
    return _detokenizer().detokenize([w for w, kept in zip(words, keep, strict=True) if kept])


@functools.cache
def _word_tokenizer():
    # word_tokenize would first split sentences with punkt, a download; its word-level part needs none.
    from nltk.tokenize import NLTKWordTokenizer

    return NLTKWordTokenizer()


@functools.cache
def _detokenizer():
    from nltk.tokenize.treebank import TreebankWordDetokenizer

    return TreebankWordDetokenizer()


def _start_key(key: str) -> str:
    split, _, name = key.partition("/")
    return f"{split}/{START_PREFIX}{name}"
