"""Sentence-embedding fine-tuning (seed 004): a SentenceTransformer trained with the `loss` group, scored on STS.

NLI rows become (anchor, positive[, negative]) for the in-batch-negative losses or scored pairs for cosine/CoSENT;
STS rows become scored pairs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated

from nlpexp import NlpexpError
from nlpexp.data import NLI_COLUMNS, STS_COLUMNS
from nlpexp.data.pairs import (
    NLI_FORMATS,
    nli_ranking_examples,
    nli_scored_pairs,
    sts_scored_pairs,
)
from nlpexp.rules import OneOf, PositiveNumber
from nlpexp.task import imported
from nlpexp.task.sts import IN_BATCH_NEGATIVE_LOSSES, SCORED_PAIR_LOSSES, StsScoredTask

log = logging.getLogger(__name__)


class EmbeddingTask(StsScoredTask):
    name = "embedding"
    losses = IN_BATCH_NEGATIVE_LOSSES + SCORED_PAIR_LOSSES
    loss_choices = "mnrl, cached_mnrl, cosine or cosent"
    groups_by_length = True  # the triplet recipe: STSb +0.0002 (1.56x faster on its full 9,582 triplets)

    def __init__(self, *, nli_format: Annotated[str, OneOf(NLI_FORMATS)] = "all_pairs",
                 label_scores: Mapping[str, float] = MappingProxyType({}), max_score: PositiveNumber = 5.0, **kwargs):
        super().__init__(**kwargs)
        self.nli_format = nli_format
        self.label_scores = dict(label_scores)
        self.max_score = max_score

    def validate(self) -> None:
        super().validate()
        if self.mode != "train" or not issubclass(self.loss_factory.func, imported(IN_BATCH_NEGATIVE_LOSSES)):
            return
        if not self.data.label_names:
            raise NlpexpError(f"loss={self.loss_factory.func.__name__} learns from NLI pairs, but data "
                              f"'{self.data.name}' has scored pairs; use loss=cosine or loss=cosent, or NLI data "
                              f"(data=allnli)")
        warn_if_accumulating(self.loss_factory.func, self.trainer_settings)

    def examples(self):
        if not self.data.label_names:
            return sts_scored_pairs(self.data.load("train", STS_COLUMNS, text_columns=STS_COLUMNS[:2]),
                                    self.max_score)
        rows = self.data.load("train", NLI_COLUMNS, text_columns=NLI_COLUMNS[:2])
        if isinstance(self.loss, imported(IN_BATCH_NEGATIVE_LOSSES)):
            return nli_ranking_examples(rows, self.data.label_names, self.nli_format)
        return nli_scored_pairs(rows, self.data.label_names, self.label_scores)


def warn_if_accumulating(loss_class, settings) -> None:
    """Gradient accumulation sums the losses of small batches: no batch ever sees more in-batch negatives."""
    from sentence_transformers.sentence_transformer import losses

    if settings.gradient_accumulation_steps <= 1:
        return
    cached = issubclass(loss_class, (losses.CachedMultipleNegativesRankingLoss,
                                     losses.CachedMultipleNegativesSymmetricRankingLoss))
    way_out = "raise trainer.batch_size instead (cached_mnrl keeps memory flat at loss.mini_batch_size)" if cached \
        else "use loss=cached_mnrl with a larger trainer.batch_size instead"
    log.warning("trainer.gradient_accumulation_steps=%d does not add in-batch negatives: %s still contrasts each "
                "example with the %d others of its batch; %s", settings.gradient_accumulation_steps,
                loss_class.__name__, settings.batch_size - 1, way_out)
