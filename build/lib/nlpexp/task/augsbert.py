"""Augmented SBERT (seed 004; Thakur et al. 2021): a few gold pairs, many silver ones.

One run does four stages, each leaving its artifact in the run dir:
  1. cross_encoder/     a cross-encoder trained on the gold pairs (the first `gold_size` training rows)
  2. candidates.jsonl   unlabelled pairs: the remaining rows' own pairs, or random / nearest-neighbour pairs of
                        their sentences
  3. silver.jsonl       the candidates with the cross-encoder's score (its probability of "similar")
  4. best_model/        the bi-encoder trained on gold + silver with the `loss` group (cosine by default)
A rerun in the same run dir skips the stages already done. stages.json records the settings each artifact was
built with; a rerun whose settings differ is refused instead of mixing artifacts. `task.gold_only=true` skips
stages 1-3 (the baseline). With several processes (torchrun), each computes every stage and rank 0 alone writes
the artifacts.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from sentence_transformers import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments, SentenceTransformer
from sentence_transformers.cross_encoder.evaluation import CrossEncoderCorrelationEvaluator
from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

from nlpexp.data.pairs import NLI_COLUMNS, STS_COLUMNS, nli_scored_pairs, random_pairs, unique_texts, unordered_unique
from nlpexp.distributed import is_main_process
from nlpexp.errors import NlpexpError
from nlpexp.io import write_json_atomic, write_text_atomic
from nlpexp.task.embedding import SCORED_PAIR_LOSSES, SentenceEmbeddingTask
from nlpexp.trainer import ConfiguredOptimization

log = logging.getLogger(__name__)
SAMPLINGS = ("given", "random", "nearest")
CROSS_ENCODER_MONITOR = "val/spearman"  # its score against the STS gold scores


class AugSbertTask(SentenceEmbeddingTask):
    def __init__(self, *, gold_size: int, label_scores: Mapping[str, float], gold_only: bool = False,
                 pair_sampling: str = "given", pairs_per_sentence: int = 3, silver_threshold: float | None = None,
                 **kwargs):
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
        self.stages = StageLedger(self.run_dir)
        self.cross_encoder_metrics: dict[str, float] = {}

    def check_loss(self) -> None:
        super().check_loss()
        if not issubclass(self.loss_factory.func, SCORED_PAIR_LOSSES):
            raise NlpexpError(f"task augsbert trains the bi-encoder on scored pairs: use loss=cosine or loss=cosent, "
                              f"got {self.loss_factory.func.__name__}")
        if not self.data.label_names:
            raise NlpexpError(f"task augsbert needs labelled NLI data for its gold pairs; data '{self.data.name}' "
                              f"has no label_names")

    def prepare_training(self) -> None:
        rows = self.data.load("train", NLI_COLUMNS, text_columns=NLI_COLUMNS[:2])
        if not self.gold_only and len(rows) <= self.gold_size:
            raise NlpexpError(f"task.gold_size={self.gold_size} leaves none of the {len(rows)} training rows for "
                              f"silver pairs; lower it, or set task.gold_only=true")
        self.gold = nli_scored_pairs(rows.select(range(min(self.gold_size, len(rows)))), self.data.label_names,
                                     self.label_scores)
        self.unlabelled = rows.select(range(self.gold_size, len(rows))) if not self.gold_only else None

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
            # The run's loggers follow the bi-encoder; the cross-encoder's figures go to metrics.json.
            callbacks=[c for c in self.training_callbacks() if c not in self.callbacks],
            optimizer_factory=self.optimizer_factory, scheduler_factory=self.scheduler_factory,
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
        if self.pair_sampling == "given":
            pairs = list(zip(self.unlabelled["premise"], self.unlabelled["hypothesis"], strict=True))
        else:
            sentences = unique_texts(self.unlabelled, NLI_COLUMNS[:2])
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
        return _plain(by_stage[stage])


def gold_and_silver(gold, silver: list[dict], threshold: float | None):
    """Gold pairs first, then the silver ones (scores cut to 0/1 at `threshold` when it is set)."""
    import datasets

    if not silver:
        return gold
    scores = [row["score"] if threshold is None else float(row["score"] >= threshold) for row in silver]
    silver_set = datasets.Dataset.from_dict({"sentence1": [row["sentence1"] for row in silver],
                                             "sentence2": [row["sentence2"] for row in silver], "score": scores})
    return datasets.concatenate_datasets([gold, silver_set.cast(gold.features)])


class StageLedger:
    """stages.json in the run dir: per stage, the settings its artifact was built with (and its metrics)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "stages.json"
        self.records: dict[str, dict] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def done(self, stage: str, artifact: Path, settings: dict) -> bool:
        """True when `artifact` exists and was built with `settings`; refuses one built with others."""
        record = self.records.get(stage)
        if record is None or not artifact.exists():
            return False
        if record["settings"] != settings:
            changed = sorted(k for k in settings.keys() | record["settings"].keys()
                             if settings.get(k) != record["settings"].get(k))
            raise NlpexpError(f"{artifact} was built with other settings (changed: {', '.join(changed)}); use a new "
                              f"hydra.run.dir, or delete it and the later stages' artifacts to rebuild them")
        return True

    def record(self, stage: str, settings: dict, metrics: Mapping[str, float] | None = None) -> None:
        self.records[stage] = {"settings": settings, "metrics": dict(metrics or {})}
        if is_main_process():
            write_json_atomic(self.path, self.records)

    def metrics(self, stage: str) -> dict[str, float]:
        return dict(self.records.get(stage, {}).get("metrics", {}))


class CrossEncoderStageTrainer(ConfiguredOptimization, CrossEncoderTrainer):
    """CrossEncoderTrainer with the optimizer and schedule of the config."""


def save_folder_atomically(model, folder: Path) -> None:
    """A half-written folder never looks like a finished stage: save beside it, then rename."""
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save(str(staging))
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


def write_jsonl_atomic(path: Path, rows: list[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _plain(settings: dict) -> dict:
    """JSON round trip, so that settings compare equal to what stages.json holds."""
    return json.loads(json.dumps(settings, sort_keys=True, default=str))
