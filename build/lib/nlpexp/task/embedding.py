"""Sentence-embedding fine-tuning (seed 004): a SentenceTransformer trained with the `loss` group, scored on STS.

SentenceEmbeddingTask is what the embedding tasks share (STS evaluation, the trainer run, best_model/);
EmbeddingTask shapes NLI or STS rows into the examples its loss reads.
"""

from __future__ import annotations

import logging

from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer import losses

from nlpexp.data import DataSpec
from nlpexp.data.pairs import (
    NLI_COLUMNS,
    NLI_FORMATS,
    STS_COLUMNS,
    nli_ranking_examples,
    nli_scored_pairs,
    sts_scored_pairs,
)
from nlpexp.distributed import is_main_process
from nlpexp.errors import NlpexpError
from nlpexp.metrics import prefixed, split_name
from nlpexp.task.base import Task
from nlpexp.task.evaluators import sts_evaluator
from nlpexp.trainer import ConfiguredOptimization

log = logging.getLogger(__name__)

# Losses that contrast each anchor with the other examples of its batch: (anchor, positive[, negative]).
IN_BATCH_NEGATIVE_LOSSES = (
    losses.MultipleNegativesRankingLoss,
    losses.CachedMultipleNegativesRankingLoss,
    losses.MultipleNegativesSymmetricRankingLoss,
    losses.CachedMultipleNegativesSymmetricRankingLoss,
)
# Losses that regress or rank a similarity score: (sentence1, sentence2, score in [0, 1]).
SCORED_PAIR_LOSSES = (losses.CosineSimilarityLoss, losses.CoSENTLoss, losses.AnglELoss)
BATCH_SAMPLERS = ("batch_sampler", "no_duplicates")


class SentenceEmbeddingTask(Task):
    """Trains `self.model` with `self.loss` on examples a subclass prepares; best checkpoint by STS validation."""

    def __init__(self, *, sts: DataSpec, batch_sampler: str = "batch_sampler", **kwargs):
        super().__init__(**kwargs)
        if batch_sampler not in BATCH_SAMPLERS:
            raise NlpexpError(f"task.batch_sampler must be one of {BATCH_SAMPLERS}, got {batch_sampler!r}")
        self.sts = sts
        self.batch_sampler = batch_sampler

    def setup(self) -> None:
        if self.mode == "train":
            self.check_loss()
            if not self.sts.has("validation"):
                raise NlpexpError(f"training keeps the best checkpoint by STS validation, but data '{self.sts.name}' "
                                  f"(task.sts) has no validation split; set data@task.sts=stsb or korsts")
        self.model = self.build_model()
        if self.mode == "train":
            self.loss = self.loss_factory(model=self.model)
            self.prepare_training()

    def check_loss(self) -> None:
        """Refuse, before anything loads, a loss the task cannot feed."""
        if self.loss_factory is None:
            raise NlpexpError("this task trains with a loss: set loss=<name> (see conf/loss/)")

    def build_model(self):
        return self.model_spec.sentence_transformer()

    def prepare_training(self) -> None:
        """Build what train() needs (the examples); runs in setup so that data problems surface early."""

    def fit(self, train_set) -> None:
        """One SentenceTransformerTrainer run on `train_set`; keeps the best model in memory and in best_model/."""
        args = self.training_arguments(SentenceTransformerTrainingArguments, batch_sampler=self.batch_sampler)
        trainer = EmbeddingTrainer(
            model=self.model,
            args=args,
            train_dataset=train_set,
            loss=self.loss,
            evaluator=self.sts_evaluator("validation"),
            callbacks=self.training_callbacks(),
            optimizer_factory=self.optimizer_factory,
            scheduler_factory=self.scheduler_factory,
        )
        self.run_trainer(trainer)
        self.train_metrics["train/examples"] = float(len(train_set))
        if is_main_process():
            self.model.save(str(self.best_model_dir))

    def sts_evaluator(self, role: str):
        if not self.sts.has(role):
            return None
        pairs = self.sts.load(role, STS_COLUMNS, text_columns=STS_COLUMNS[:2])
        return sts_evaluator(pairs, self.trainer_settings.eval_batch_size)

    def _evaluate(self, role: str) -> dict[str, float]:
        evaluator = self.sts_evaluator(role)
        return {} if evaluator is None else prefixed(evaluator(self.model), split_name(role))


class EmbeddingTask(SentenceEmbeddingTask):
    """NLI rows become (anchor, positive[, negative]) for in-batch-negative losses or scored pairs for
    cosine/CoSENT; STS rows become scored pairs."""

    def __init__(self, *, nli_format: str = "all_pairs", label_scores: dict[str, float] | None = None,
                 max_score: float = 5.0, **kwargs):
        super().__init__(**kwargs)
        if nli_format not in NLI_FORMATS:
            raise NlpexpError(f"task.nli_format must be one of {NLI_FORMATS}, got {nli_format!r}")
        self.nli_format = nli_format
        self.label_scores = dict(label_scores or {})
        self.max_score = max_score

    def check_loss(self) -> None:
        super().check_loss()
        loss_class = self.loss_factory.func
        if not issubclass(loss_class, IN_BATCH_NEGATIVE_LOSSES + SCORED_PAIR_LOSSES):
            raise NlpexpError(f"task embedding cannot feed {loss_class.__name__}; use loss=mnrl, cached_mnrl, "
                              f"cosine or cosent")
        if issubclass(loss_class, IN_BATCH_NEGATIVE_LOSSES):
            warn_if_accumulating(loss_class, self.trainer_settings)

    def prepare_training(self) -> None:
        in_batch = isinstance(self.loss, IN_BATCH_NEGATIVE_LOSSES)
        if self.data.label_names:
            rows = self.data.load("train", NLI_COLUMNS, text_columns=NLI_COLUMNS[:2])
            self.train_set = nli_ranking_examples(rows, self.data.label_names, self.nli_format) if in_batch \
                else nli_scored_pairs(rows, self.data.label_names, self.label_scores)
            return
        if in_batch:
            raise NlpexpError(f"loss={type(self.loss).__name__} learns from NLI pairs, but data '{self.data.name}' "
                              f"has scored pairs; use loss=cosine or loss=cosent, or NLI data (data=allnli)")
        rows = self.data.load("train", STS_COLUMNS, text_columns=STS_COLUMNS[:2])
        self.train_set = sts_scored_pairs(rows, self.max_score)

    def train(self) -> None:
        self.fit(self.train_set)


def warn_if_accumulating(loss_class, settings) -> None:
    """Gradient accumulation sums the losses of small batches: no batch ever sees more in-batch negatives."""
    if settings.gradient_accumulation_steps <= 1:
        return
    cached = issubclass(loss_class, (losses.CachedMultipleNegativesRankingLoss,
                                     losses.CachedMultipleNegativesSymmetricRankingLoss))
    way_out = "raise trainer.batch_size instead (cached_mnrl keeps memory flat at loss.mini_batch_size)" if cached \
        else "use loss=cached_mnrl with a larger trainer.batch_size instead"
    log.warning("trainer.gradient_accumulation_steps=%d does not add in-batch negatives: %s still contrasts each "
                "example with the %d others of its batch; %s", settings.gradient_accumulation_steps,
                loss_class.__name__, settings.batch_size - 1, way_out)


class EmbeddingTrainer(ConfiguredOptimization, SentenceTransformerTrainer):
    """SentenceTransformerTrainer with the optimizer and schedule of the config."""
