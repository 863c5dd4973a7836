"""AugSbertTask: the four stages of one AugSBERT run (see the package docstring)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from sentence_transformers import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments, SentenceTransformer
from sentence_transformers.cross_encoder.evaluation import CrossEncoderCorrelationEvaluator
from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

from nlpexp.data.pairs import (
    NLI_COLUMNS,
    STS_COLUMNS,
    nli_scored_pairs,
    random_pairs,
    sts_scored_pairs,
    unique_texts,
    unordered_unique,
)
from nlpexp.distributed import is_main_process
from nlpexp.errors import NlpexpError
from nlpexp.model.weights import parameters_not_in
from nlpexp.task.augsbert.artifacts import (
    StageLedger,
    gold_and_silver,
    plain,
    read_jsonl,
    save_folder_atomically,
    write_jsonl_atomic,
)
from nlpexp.task.embedding import SCORED_PAIR_LOSSES, SentenceEmbeddingTask
from nlpexp.trainer import ConfiguredOptimization
from nlpexp.trainer.batching import LengthAwareBatching

log = logging.getLogger(__name__)
SAMPLINGS = ("given", "random", "nearest")
CROSS_ENCODER_MONITOR = "val/spearman"  # its score against the STS gold scores


class AugSbertTask(SentenceEmbeddingTask):
    def __init__(self, *, gold_size: int, label_scores: Mapping[str, float], gold_only: bool = False,
                 pair_sampling: str = "given", pairs_per_sentence: int = 3, silver_threshold: float | None = None,
                 max_score: float = 5.0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(gold_size, int) or gold_size < 1:
            raise NlpexpError(f"task.gold_size must be a positive integer, got {gold_size!r}")
        if pair_sampling not in SAMPLINGS:
            raise NlpexpError(f"task.pair_sampling must be one of {SAMPLINGS}, got {pair_sampling!r}")
        if not isinstance(pairs_per_sentence, int) or pairs_per_sentence < 1:
            raise NlpexpError(f"task.pairs_per_sentence must be a positive integer, got {pairs_per_sentence!r}")
        if silver_threshold is not None and not 0.0 < silver_threshold < 1.0:
            raise NlpexpError(f"task.silver_threshold must be null or in (0, 1), got {silver_threshold}")
        self.gold_size = gold_size
        self.label_scores = dict(label_scores)
        self.gold_only = gold_only
        self.pair_sampling = pair_sampling
        self.pairs_per_sentence = pairs_per_sentence
        self.silver_threshold = silver_threshold
        self.max_score = max_score
        self.stages = StageLedger(self.run_dir)
        self.cross_encoder_metrics: dict[str, float] = {}

    def check_loss(self) -> None:
        super().check_loss()
        if not issubclass(self.loss_factory.func, SCORED_PAIR_LOSSES):
            raise NlpexpError(f"task augsbert trains the bi-encoder on scored pairs: use loss=cosine or loss=cosent, "
                              f"got {self.loss_factory.func.__name__}")

    @property
    def text_columns(self) -> tuple[str, str]:
        """The sentence columns of the training rows: NLI pairs (labelled data) or STS pairs (scored data)."""
        return NLI_COLUMNS[:2] if self.data.label_names else STS_COLUMNS[:2]

    def prepare_training(self) -> None:
        """Gold: the first `gold_size` training rows, NLI labels mapped by label_scores or STS scores / max_score
        (the paper's in-domain setting); the other rows are unlabelled, their scores or labels never read."""
        columns = NLI_COLUMNS if self.data.label_names else STS_COLUMNS
        rows = self.data.load("train", columns, text_columns=self.text_columns)
        if not self.gold_only and len(rows) <= self.gold_size:
            raise NlpexpError(f"task.gold_size={self.gold_size} leaves none of the {len(rows)} training rows for "
                              f"silver pairs; lower it, or set task.gold_only=true")
        first = rows.select(range(min(self.gold_size, len(rows))))
        self.gold = nli_scored_pairs(first, self.data.label_names, self.label_scores) if self.data.label_names \
            else sts_scored_pairs(first, self.max_score)
        self.unlabelled = rows.select(range(self.gold_size, len(rows))).select_columns(list(self.text_columns)) \
            if not self.gold_only else None

    def train(self) -> None:
        silver = [] if self.gold_only else self._silver()
        train_set = gold_and_silver(self.gold, silver, self.silver_threshold)
        settings = self._settings("bi_encoder")
        if self.stages.done("bi_encoder", self.best_model_dir, settings):
            log.info("stage bi_encoder: reusing %s", self.best_model_dir)
            self.model = SentenceTransformer(str(self.best_model_dir), local_files_only=True)
        else:
            self.fit(train_set)
            self.stages.record("bi_encoder", settings)
        self.train_metrics.update({"train/gold_pairs": float(len(self.gold)),
                                   "train/silver_pairs": float(len(train_set) - len(self.gold))})

    def evaluate(self, role: str) -> dict[str, float]:
        metrics = super().evaluate(role)
        return {**metrics, **self.cross_encoder_metrics} if role == "validation" else metrics

    def resume_from(self, checkpoints_dir: Path) -> str | None:
        # trainer.resume=true continues whichever stage was interrupted; the stages after it start afresh.
        if self.trainer_settings.resume is True and not any(Path(checkpoints_dir).glob("checkpoint-*")):
            return None
        return super().resume_from(checkpoints_dir)

    # -- stages ---------------------------------------------------------------------------------------------

    def _silver(self) -> list[dict]:
        """Stage 3 (after 1 and 2): the candidates with the cross-encoder's scores."""
        path, settings = self.run_dir / "silver.jsonl", self._settings("silver")
        if self.stages.done("silver", path, settings):
            log.info("stage silver: reusing %s", path)
            self.cross_encoder_metrics = self.stages.metrics("cross_encoder")
            return read_jsonl(path)
        cross_encoder = self._cross_encoder()
        candidates = self._candidates()
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
        folder, settings = self.run_dir / "cross_encoder", self._settings("cross_encoder")
        if self.stages.done("cross_encoder", folder, settings):
            log.info("stage cross_encoder: reusing %s", folder)
            self.cross_encoder_metrics = self.stages.metrics("cross_encoder")
            return CrossEncoder(str(folder), local_files_only=True)
        spec = self.model_spec
        model = CrossEncoder(spec.path(), num_labels=1, max_length=spec.max_seq_length,
                             trust_remote_code=spec.trust_remote_code)
        checkpoints = self.run_dir / "cross_encoder_checkpoints"
        args = self.trainer_settings.training_arguments(CrossEncoderTrainingArguments, checkpoints,
                                                        CROSS_ENCODER_MONITOR, True, self.optimizer_factory)
        sts = self.sts.load("validation", STS_COLUMNS, text_columns=STS_COLUMNS[:2])
        evaluator = CrossEncoderCorrelationEvaluator(list(zip(sts["sentence1"], sts["sentence2"], strict=True)),
                                                     list(sts["score"]), name="", write_csv=False,
                                                     batch_size=self.trainer_settings.eval_batch_size)
        trainer = CrossEncoderStageTrainer(
            model=model, args=args, train_dataset=self.gold, loss=BinaryCrossEntropyLoss(model), evaluator=evaluator,
            new_parameters=parameters_not_in(model[0].model, spec.path()),  # its head starts untrained
            # The run's loggers follow the bi-encoder; the cross-encoder's figures go to metrics.json.
            callbacks=[c for c in self.training_callbacks() if c not in self.callbacks],
            optimizer_factory=self.optimizer_factory, scheduler_factory=self.scheduler_factory,
            trainer_settings=self.trainer_settings,
        )
        resume = None if isinstance(self.trainer_settings.resume, str) else self.resume_from(checkpoints)
        trainer.train(resume_from_checkpoint=resume)
        self.cross_encoder_metrics = {"val/cross_encoder_spearman": float(trainer.state.best_metric)}
        if is_main_process():
            save_folder_atomically(model, folder)
        self.stages.record("cross_encoder", settings, metrics=self.cross_encoder_metrics)
        return model

    def _candidates(self) -> list[tuple[str, str]]:
        """Stage 2: unlabelled pairs, none of them a gold pair."""
        path, settings = self.run_dir / "candidates.jsonl", self._settings("candidates")
        if self.stages.done("candidates", path, settings):
            log.info("stage candidates: reusing %s", path)
            return [(row["sentence1"], row["sentence2"]) for row in read_jsonl(path)]
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
        training = {"trainer": {k: v for k, v in vars(self.trainer_settings).items() if k != "resume"},
                    "optimizer": dict(self.optimizer_factory.keywords),
                    "scheduler": dict(self.scheduler_factory.keywords)}
        sampling = {"pair_sampling": self.pair_sampling, "pairs_per_sentence": self.pairs_per_sentence}
        by_stage = {"cross_encoder": {**gold, **training, "sts": self.sts.name}, "candidates": {**gold, **sampling}}
        by_stage["silver"] = {**by_stage["cross_encoder"], **sampling}
        by_stage["bi_encoder"] = {**(gold if self.gold_only else by_stage["silver"]), **training,
                                  "gold_only": self.gold_only, "silver_threshold": self.silver_threshold,
                                  "batch_sampler": self.batch_sampler, "loss": self.loss_factory.func.__name__,
                                  "loss_args": dict(self.loss_factory.keywords)}
        return plain(by_stage[stage])


class CrossEncoderStageTrainer(LengthAwareBatching, ConfiguredOptimization, CrossEncoderTrainer):
    """CrossEncoderTrainer with the optimizer and schedule of the config."""
