"""AugSbertTask: the four stages of one AugSBERT run (see the package docstring). sentence-transformers is imported
when a stage runs: the schema reads the task's keys from this module."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np

from nlpexp import NlpexpError, is_main_process
from nlpexp.data import NLI_COLUMNS, STS_COLUMNS
from nlpexp.data.pairs import (
    nli_scored_pairs,
    random_pairs,
    sts_scored_pairs,
    unique_texts,
    unordered_unique,
)
from nlpexp.io import write_jsonl_atomic
from nlpexp.rules import Num, Positive, PositiveNumber
from nlpexp.task.augsbert.stages import (
    StageLedger,
    gold_and_silver,
    plain,
    read_jsonl,
    save_folder_atomically,
)
from nlpexp.task.sts import SCORED_PAIR_LOSSES, StsScoredTask

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

log = logging.getLogger(__name__)
CROSS_ENCODER_MONITOR = "val/spearman"  # its score against the STS gold scores


class AugSbertTask(StsScoredTask):
    name = "augsbert"
    losses = SCORED_PAIR_LOSSES  # the bi-encoder learns scored pairs, gold and silver
    loss_choices = "cosine or cosent"
    groups_by_length = True  # the STS recipe: STSb +0.0049, 1.35x faster (docs/performance.md)

    def __init__(self, *, gold_size: Positive, gold_only: bool = False,
                 pair_sampling: Literal["given", "random", "nearest"] = "given", pairs_per_sentence: Positive = 3,
                 silver_threshold: Annotated[float, Num(0, 1)] | None = None, label_scores: Mapping[str, float],
                 max_score: PositiveNumber = 5.0, **kwargs):
        super().__init__(**kwargs)
        # How the gold and silver pairs are made (see conf/task/augsbert.yaml)
        self.gold_size = gold_size
        self.label_scores = dict(label_scores)
        self.gold_only = gold_only
        self.pair_sampling = pair_sampling
        self.pairs_per_sentence = pairs_per_sentence
        self.silver_threshold = silver_threshold
        self.max_score = max_score
        self.stages = StageLedger(self.run_dir)
        self.cross_encoder_metrics: dict[str, float] = {}
        self.trained = False

    def reuses_validation(self) -> bool:
        return False  # validation also scores the cross-encoder of stage 1

    def score(self, role: str) -> dict[str, float]:
        """STS of the bi-encoder; after training, validation also holds the cross-encoder's (stage 1) spearman."""
        stage_one = self.cross_encoder_metrics if role == "validation" and self.trained else {}
        return {**super().score(role), **stage_one}

    @property
    def text_columns(self) -> tuple[str, str]:
        """The sentence columns of the training rows: NLI pairs (labelled data) or STS pairs (scored data)."""
        return NLI_COLUMNS[:2] if self.data.label_names else STS_COLUMNS[:2]

    def examples(self):
        """Gold: the first `gold_size` training rows, NLI labels mapped by label_scores or STS scores / max_score
        (the paper's in-domain setting); the other rows are unlabelled, their scores or labels never read."""
        columns = NLI_COLUMNS if self.data.label_names else STS_COLUMNS
        rows = self.data.load("train", columns, text_columns=self.text_columns)
        if not self.gold_only and len(rows) <= self.gold_size:
            raise NlpexpError(f"task.gold_size={self.gold_size} leaves none of the {len(rows)} training rows "
                              f"for silver pairs; lower it, or set task.gold_only=true")
        first = rows.select(range(min(self.gold_size, len(rows))))
        self.gold = nli_scored_pairs(first, self.data.label_names, self.label_scores) if self.data.label_names \
            else sts_scored_pairs(first, self.max_score)
        self.unlabelled = rows.select(range(self.gold_size, len(rows))).select_columns(list(self.text_columns)) \
            if not self.gold_only else None
        return self.gold

    def train(self) -> None:
        from sentence_transformers import SentenceTransformer

        silver = [] if self.gold_only else self._silver()
        train_set = gold_and_silver(self.gold, silver, self.silver_threshold)
        settings = self._settings("bi_encoder")
        if self.stages.done("bi_encoder", self.best_model_dir, settings):
            log.info("stage 4/4 bi_encoder: reusing %s", self.best_model_dir)
            self.model = SentenceTransformer(str(self.best_model_dir), local_files_only=True)
        else:
            log.info("stage 4/4 bi_encoder: training on %d gold + %d silver pairs", len(self.gold),
                     len(train_set) - len(self.gold))
            self.fit(train_set)
            self.stages.record("bi_encoder", settings)
            self.train_metrics["train/examples"] = float(len(train_set))
        self.train_metrics.update({"train/gold_pairs": float(len(self.gold)),
                                   "train/silver_pairs": float(len(train_set) - len(self.gold))})
        self.trained = True

    # -- stages ---------------------------------------------------------------------------------------------

    def _silver(self) -> list[dict]:
        """Stage 3 (after 1 and 2): the candidates with the cross-encoder's scores."""
        path, settings = self.run_dir / "silver.jsonl", self._settings("silver")
        if self.stages.done("silver", path, settings):
            log.info("stage 3/4 silver: reusing %s", path)
            self.cross_encoder_metrics = self.stages.metrics("cross_encoder")
            return read_jsonl(path)
        cross_encoder = self._cross_encoder()
        candidates = self._candidates()
        log.info("stage 3/4 silver: the cross-encoder scores %d candidate pairs", len(candidates))
        scores = cross_encoder.predict(candidates, batch_size=self.trainer_settings.eval_batch_size,
                                       show_progress_bar=False)
        silver = [{"sentence1": a, "sentence2": b, "score": round(float(s), 6)}
                  for (a, b), s in zip(candidates, scores, strict=True)]
        if is_main_process():
            write_jsonl_atomic(path, silver)
        self.stages.record("silver", settings)
        return silver

    def _cross_encoder(self) -> CrossEncoder:
        """Stage 1: a binary cross-encoder trained on the gold pairs, kept by its STS validation spearman."""
        from sentence_transformers import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
        from sentence_transformers.cross_encoder.evaluation import CrossEncoderCorrelationEvaluator
        from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

        from nlpexp.model.weights import parameters_not_in

        folder, settings = self.run_dir / "cross_encoder", self._settings("cross_encoder")
        if self.stages.done("cross_encoder", folder, settings):
            log.info("stage 1/4 cross_encoder: reusing %s", folder)
            self.cross_encoder_metrics = self.stages.metrics("cross_encoder")
            return CrossEncoder(str(folder), local_files_only=True)
        log.info("stage 1/4 cross_encoder: training on %d gold pairs", len(self.gold))
        spec = self.model_spec
        model = CrossEncoder(spec.path(), num_labels=1, max_length=spec.max_seq_length,
                             trust_remote_code=spec.trust_remote_code)
        checkpoints = self.run_dir / "cross_encoder_checkpoints"
        args = self.training_arguments(CrossEncoderTrainingArguments, checkpoints, CROSS_ENCODER_MONITOR)
        sts = self.sts.load("validation", STS_COLUMNS, text_columns=STS_COLUMNS[:2])
        evaluator = CrossEncoderCorrelationEvaluator(list(zip(sts["sentence1"], sts["sentence2"], strict=True)),
                                                     list(sts["score"]), name="", write_csv=False,
                                                     batch_size=self.trainer_settings.eval_batch_size)
        trainer = self.make_trainer(
            CrossEncoderTrainer, args, model=model, train_dataset=self.gold, loss=BinaryCrossEntropyLoss(model),
            evaluator=evaluator, new_parameters=parameters_not_in(model[0].model, spec.path()),  # an untrained head
            # The run's loggers follow the bi-encoder; the cross-encoder's figures go to metrics.json.
            callbacks=[c for c in self.training_callbacks() if c not in self.callbacks],
        )
        # trainer.resume=true continues whichever stage was interrupted; a checkpoint folder is the bi-encoder's.
        self.run_trainer(trainer, checkpoints, figures=False, resume=not isinstance(self.trainer_settings.resume, str))
        self.cross_encoder_metrics = {"val/cross_encoder_spearman": float(trainer.state.best_metric)}
        if is_main_process():
            save_folder_atomically(model, folder)
        self.stages.record("cross_encoder", settings, metrics=self.cross_encoder_metrics)
        return model

    def _candidates(self) -> list[tuple[str, str]]:
        """Stage 2: unlabelled pairs, none of them a gold pair."""
        path, settings = self.run_dir / "candidates.jsonl", self._settings("candidates")
        if self.stages.done("candidates", path, settings):
            log.info("stage 2/4 candidates: reusing %s", path)
            return [(row["sentence1"], row["sentence2"]) for row in read_jsonl(path)]
        log.info("stage 2/4 candidates: %s pairs of the unlabelled rows", self.pair_sampling)
        first, second = self.text_columns
        if self.pair_sampling == "given":
            pairs = list(zip(self.unlabelled[first], self.unlabelled[second], strict=True))
        else:
            sentences = unique_texts(self.unlabelled, self.text_columns)
            pairs = random_pairs(sentences, self.pairs_per_sentence, np.random.default_rng(self.data.seed)) \
                if self.pair_sampling == "random" else self._nearest_pairs(sentences)
        gold = set(zip(self.gold["sentence1"], self.gold["sentence2"], strict=True))
        pairs = [pair for pair in dict.fromkeys(pairs) if pair not in gold]
        if is_main_process():
            write_jsonl_atomic(path, [{"sentence1": a, "sentence2": b} for a, b in pairs])
        self.stages.record("candidates", settings)
        return pairs

    def _nearest_pairs(self, sentences: list[str]) -> list[tuple[str, str]]:
        """Each sentence with its nearest neighbours under the starting bi-encoder (semantic-search sampling)."""
        from sentence_transformers.util import semantic_search

        embeddings = self.model.encode(sentences, batch_size=self.trainer_settings.eval_batch_size,
                                       convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
        hits = semantic_search(embeddings, embeddings, top_k=self.pairs_per_sentence + 1)
        pairs = []
        for i, row in enumerate(hits):
            neighbours = [hit["corpus_id"] for hit in row if hit["corpus_id"] != i][:self.pairs_per_sentence]
            pairs += [(sentences[i], sentences[j]) for j in neighbours]
        return unordered_unique(pairs)

    def _settings(self, stage: str) -> dict:
        """What a stage's artifact depends on; a rerun must match it to reuse the artifact."""
        data = self.data
        gold = {"model": vars(self.model_spec), "gold_size": self.gold_size, "label_scores": self.label_scores,
                "max_score": self.max_score,
                "data": {"name": data.name, "splits": data.splits, "columns": data.columns, "shuffle": data.shuffle,
                         "max_train_samples": data.max_train_samples, "seed": data.seed}}
        trainer = self.trainer_settings  # its declared settings, not the state it keeps (what it has announced)
        training = {"trainer": {f.name: getattr(trainer, f.name) for f in fields(trainer) if f.name != "resume"},
                    "optimizer": dict(self.optimizer_factory.keywords),
                    "scheduler": dict(self.scheduler_factory.keywords)}
        sampling = {"pair_sampling": self.pair_sampling, "pairs_per_sentence": self.pairs_per_sentence}
        by_stage = {"cross_encoder": {**gold, **training, "sts": self.sts.name},
                    "candidates": {**gold, **sampling}}
        by_stage["silver"] = {**by_stage["cross_encoder"], **sampling}
        by_stage["bi_encoder"] = {**(gold if self.gold_only else by_stage["silver"]), **training,
                                  "gold_only": self.gold_only, "silver_threshold": self.silver_threshold,
                                  "batch_sampler": self.batch_sampler, "loss": self.loss_factory.func.__name__,
                                  "loss_args": dict(self.loss_factory.keywords)}
        return plain(by_stage[stage])

