"""What the sentence-embedding tasks (embedding, augsbert, tsdae) compose rather than inherit: the STS data they
are scored on (StsScoring) and one SentenceTransformerTrainer run of a task's examples (fit_bi_encoder)."""

from __future__ import annotations

from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer import losses

from nlpexp.data import DataSpec
from nlpexp.data.pairs import STS_COLUMNS
from nlpexp.distributed import is_main_process
from nlpexp.errors import NlpexpError
from nlpexp.metrics import prefixed, split_name
from nlpexp.task.evaluators import sts_evaluator
from nlpexp.trainer import ConfiguredOptimization
from nlpexp.trainer.batching import LengthAwareBatching
from nlpexp.trainer.lazy import lazy_evaluator

# Losses that contrast each anchor with the other examples of its batch: (anchor, positive[, negative]).
IN_BATCH_NEGATIVE_LOSSES = (
    losses.MultipleNegativesRankingLoss,
    losses.CachedMultipleNegativesRankingLoss,
    losses.MultipleNegativesSymmetricRankingLoss,
    losses.CachedMultipleNegativesSymmetricRankingLoss,
)
# Losses that regress or rank a similarity score: (sentence1, sentence2, score in [0, 1]).
SCORED_PAIR_LOSSES = (losses.CosineSimilarityLoss, losses.CoSENTLoss, losses.AnglELoss)


class StsScoring:
    """A model's spearman (and pearson) of cosine, euclidean, manhattan and dot similarity against the gold scores
    of an STS dataset (`task.sts`): how the embedding tasks score, and pick their best checkpoint."""

    def __init__(self, sts: DataSpec, batch_size: int):
        self.data = sts
        self.batch_size = batch_size

    def check(self, mode: str) -> None:
        if mode == "train" and not self.data.has("validation"):
            raise NlpexpError(f"training keeps the best checkpoint by STS validation, but data '{self.data.name}' "
                              f"(task.sts) has no validation split; set data@task.sts=stsb or korsts")

    def evaluator(self, role: str):
        """The evaluator of `role`, None when the STS data has no such split."""
        if not self.data.has(role):
            return None
        pairs = self.data.load(role, STS_COLUMNS, text_columns=STS_COLUMNS[:2])
        return sts_evaluator(pairs, self.batch_size)

    def validation_evaluator(self):
        """The validation evaluator, built at the trainer's first evaluation (not before its first step)."""
        return lazy_evaluator(self.data.has("validation"), lambda: self.evaluator("validation"))

    def score(self, model, role: str) -> dict[str, float]:
        evaluator = self.evaluator(role)
        return {} if evaluator is None else prefixed(evaluator(model), split_name(role))


def fit_bi_encoder(task, train_set, batch_sampler: str) -> None:
    """One SentenceTransformerTrainer run of `train_set` with task.loss, the best checkpoint by task.sts
    validation; the best model stays in task.model and goes to best_model/."""
    args = task.training_arguments(SentenceTransformerTrainingArguments, batch_sampler=batch_sampler)
    trainer = task.make_trainer(EmbeddingTrainer, args, model=task.model, train_dataset=train_set, loss=task.loss,
                                evaluator=task.sts.validation_evaluator())
    task.run_trainer(trainer)
    task.train_metrics["train/examples"] = float(len(train_set))
    if is_main_process():
        task.model.save(str(task.best_model_dir))


class EmbeddingTrainer(LengthAwareBatching, ConfiguredOptimization, SentenceTransformerTrainer):
    """SentenceTransformerTrainer with the optimizer, schedule and batching of the config."""
