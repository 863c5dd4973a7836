"""The task scored on STS that the sentence-embedding tasks share (StsScoredTask), and the loss families they feed.

sentence-transformers is imported when the task runs (its evaluators are nlpexp.task.evaluators'), not here:
the schema reads the task's keys from this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from nlpexp import is_main_process
from nlpexp.data import STS_COLUMNS, DataSpec
from nlpexp.metrics import prefixed, split_name
from nlpexp.task import Task

_LOSSES = "sentence_transformers.sentence_transformer.losses."
# Losses that contrast each anchor with the other examples of its batch: (anchor, positive[, negative]).
IN_BATCH_NEGATIVE_LOSSES = tuple(_LOSSES + name for name in (
    "MultipleNegativesRankingLoss", "CachedMultipleNegativesRankingLoss", "MultipleNegativesSymmetricRankingLoss",
    "CachedMultipleNegativesSymmetricRankingLoss"))
# Losses that regress or rank a similarity score: (sentence1, sentence2, score in [0, 1]).
SCORED_PAIR_LOSSES = tuple(_LOSSES + name for name in ("CosineSimilarityLoss", "CoSENTLoss", "AnglELoss"))


class StsScoredTask(Task):
    """A SentenceTransformer trained with the `loss` group on the examples() of a task and scored on STS
    (`task.sts`): spearman and pearson of four similarities against the gold scores, which also pick its best
    checkpoint. The embedding tasks are this with examples of their own; sbert_nli adds NLI accuracy."""

    needs_validation = True  # on task.sts

    def __init__(self, *, sts: DataSpec, batch_sampler: Literal["batch_sampler", "no_duplicates"] = "batch_sampler",
                 **kwargs):
        super().__init__(**kwargs)
        self.sts = sts
        self.batch_sampler = batch_sampler

    def validation_data(self) -> list[DataSpec]:
        return [self.sts]

    def setup(self) -> None:
        self.model = self.load_model()
        if self.mode == "train":
            self.loss = self.loss_factory(model=self.model)
            self.train_set = self.examples()

    def load_model(self):
        return self.model_spec.sentence_transformer()

    def examples(self):
        """The training set, in the columns self.loss reads."""
        raise NotImplementedError

    def train(self) -> None:
        self.fit(self.train_set)
        self.train_metrics["train/examples"] = float(len(self.train_set))

    def fit(self, train_set, callbacks: Sequence = ()) -> None:
        """One SentenceTransformerTrainer run of `train_set` with self.loss (`callbacks` first), the best checkpoint
        by validation; the best model stays in self.model and goes to best_model/."""
        from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

        from nlpexp.task.evaluators import lazy_evaluator

        args = self.training_arguments(SentenceTransformerTrainingArguments, batch_sampler=self.batch_sampler)
        evaluator = lazy_evaluator(self.has_split("validation"), lambda: self.evaluator("validation"))
        self.run_trainer(self.make_trainer(SentenceTransformerTrainer, args, model=self.model, train_dataset=train_set,
                                           loss=self.loss, evaluator=evaluator,
                                           callbacks=[*callbacks, *self.training_callbacks()]))
        if is_main_process():
            self.model.save(str(self.best_model_dir))

    def score(self, role: str) -> dict[str, float]:
        evaluator = self.evaluator(role)
        return {} if evaluator is None else prefixed(evaluator(self.model), split_name(role))

    def evaluator(self, role: str):
        """The STS evaluator of `role` (a sentence-transformers evaluator), None where the STS data has none."""
        from nlpexp.task.evaluators import sts_evaluator

        if not self.sts.has(role):
            return None
        pairs = self.sts.load(role, STS_COLUMNS, text_columns=STS_COLUMNS[:2])
        return sts_evaluator(pairs, self.trainer_settings.eval_batch_size)
