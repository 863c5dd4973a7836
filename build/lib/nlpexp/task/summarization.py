"""Dialogue summarisation (seeds 001, 003) on the HF Seq2SeqTrainer, for encoder-decoder and decoder-only models.

- Encoder-decoder (BART, T5, mT5, BERT2BERT): the dialogue feeds the encoder, the summary is the label;
  predictions come from generate() (predict_with_generate).
- Decoder-only (GPT-2, KoGPT2): one sequence `dialogue + separator + summary + EOS`, the loss on the summary
  tokens only; predictions are what generate() writes after `dialogue + separator`.

ROUGE is scored against the data's reference texts, not against the tokenized labels (those are truncated, and
lower-cased by uncased tokenizers), so that every reference of a multi-reference test set counts.
Each evaluation's predictions go to predictions_<split>.jsonl in the run dir. During training, the validation
predictions of each evaluation are kept in the checkpoint saved at the same step, so the file written at the end
is the best checkpoint's, and the reported val/ metrics are its metrics.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from nlpexp.data import DataSpec
from nlpexp.data.cache import cached_map
from nlpexp.errors import NlpexpError
from nlpexp.generation import GenerationSettings
from nlpexp.io import write_text_atomic
from nlpexp.metrics import from_trainer_logs, split_name
from nlpexp.task.base import Task
from nlpexp.task.rouge import Rouge
from nlpexp.trainer import ConfiguredOptimization

log = logging.getLogger(__name__)
IGNORE_INDEX = -100  # label positions without loss (the prompt of a decoder-only model, padding)


def predictions_file(role: str) -> str:
    return f"predictions_{role}.jsonl"


@dataclass
class Examples:
    """The rows of one split as text: what is summarised and what it is scored against."""

    role: str
    ids: list[str]
    dialogues: list[str]
    references: list[list[str]]  # per row; the first one is the training target


def load_examples(data: DataSpec, role: str, reference_columns: Sequence[str]) -> Examples:
    """The dialogues of `role` with their references: the first reference column is required, the others are
    taken where the split has them; rows without an `id` column are numbered."""
    target, *extra = reference_columns
    rows = data.load(role, ("dialogue", target), text_columns=("dialogue", target), optional_columns=("id", *extra))
    ids = [str(i) for i in rows["id"]] if "id" in rows.column_names else [f"{role}-{i}" for i in range(len(rows))]
    present = [c for c in reference_columns if c in rows.column_names]
    references = [[r for r in refs if isinstance(r, str) and r.strip()]
                  for refs in zip(*(rows[c] for c in present), strict=True)]
    return Examples(role, ids, list(rows["dialogue"]), references)


class SummarizationTask(Task):
    @classmethod
    def check_config(cls, cfg) -> None:
        if cfg.get("loss") is not None:
            raise NlpexpError("task=summarization trains with the model's own token cross-entropy and takes no loss; "
                              "drop loss=")
        if cfg.get("generation") is None:
            raise NlpexpError("task=summarization decodes with the generation group; keep generation=default")
        from nlpexp.config import instantiate

        instantiate(cfg.model).check_can_generate()  # reads the model's config, not its weights

    def __init__(
        self,
        *,
        generation: GenerationSettings,
        reference_columns: Sequence[str] = ("summary",),
        multi_reference: str = "best",
        use_stemmer: bool = True,
        max_target_length: int = 128,
        source_prefix: str | None = None,
        prompt_separator: str = " TL;DR: ",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not reference_columns:
            raise NlpexpError("task.reference_columns must name at least the summary column")
        self.generation = generation
        self.reference_columns = list(reference_columns)
        self.rouge = Rouge(multi_reference, use_stemmer)
        self.max_target_length = max_target_length
        self.source_prefix = source_prefix
        self.prompt_separator = prompt_separator

    # -- setup ---------------------------------------------------------------------------------------------------

    def setup(self) -> None:
        self.tokenizer = self.model_spec.load_tokenizer()
        self.model = self.model_spec.generative_model()
        self.causal = not self.model.config.is_encoder_decoder
        self.generation.apply(self.model)
        self.eos_ids = _as_list(self.model.generation_config.eos_token_id)
        self.pad_id = next((i for i in (self.tokenizer.pad_token_id, self.model.config.pad_token_id, *self.eos_ids)
                            if i is not None), None)
        if self.pad_id is None:
            raise NlpexpError(f"model '{self.model_spec.name}' has neither a pad nor an eos token id; set one in "
                              "its config")
        if self.causal:
            if not self.eos_ids:
                raise NlpexpError(f"model '{self.model_spec.name}' has no eos_token_id: a decoder-only summariser "
                                  "needs one to end the summary (set it in the model config)")
            self.model.generation_config.pad_token_id = self.pad_id
            self.collator = CausalLMCollator(self.pad_id)
        else:
            self.collator = DataCollatorForSeq2Seq(self.tokenizer, model=self.model, label_pad_token_id=IGNORE_INDEX)
        if self.source_prefix is None:
            self.source_prefix = _checkpoint_prefix(self.model.config)
        if self.mode == "train":
            if not self.data.has("validation"):
                raise NlpexpError(f"task summarization picks the best checkpoint by {self.monitor}, but data "
                                  f"'{self.data.name}' has no validation split; add data.splits.validation=[...]")
            self.train_set = self._features(self._examples("train"), with_prompt=False)

    def _examples(self, role: str) -> Examples:
        return load_examples(self.data, role, self.reference_columns)

    def _features(self, examples: Examples, with_prompt: bool):
        """Token ids for the trainer (cached on disk); `with_prompt` adds the generation input of decoder-only
        models."""
        from datasets import Dataset

        rows = Dataset.from_dict({"source": [self.source_prefix + d for d in examples.dialogues],
                                  "target": [refs[0] for refs in examples.references]})
        lengths = {"source_length": self.model_spec.max_seq_length, "target_length": self.max_target_length}
        if self.causal:
            function = causal_features
            settings = {**lengths, "separator": self.prompt_separator, "eos_id": self.eos_ids[0],
                        "with_prompt": with_prompt}
        else:
            function, settings = seq2seq_features, {**lengths, "start_id": self.model.config.decoder_start_token_id}
        return cached_map(rows, function, self.tokenizer, cache_dir=self.cache_dir, label=examples.role,
                          settings=settings, remove_columns=["source", "target"])

    # -- train and evaluate --------------------------------------------------------------------------------------

    def train(self) -> None:
        scorer = PredictionScorer(self._examples("validation"), self.decode, self.rouge)
        trainer = self._trainer(scorer, [*self.training_callbacks(), PredictionsWithCheckpoints(scorer)],
                                train_dataset=self.train_set)
        self.run_trainer(trainer)
        trainer.save_model(str(self.best_model_dir))
        best = trainer.state.best_model_checkpoint
        kept = Path(best) / predictions_file("validation") if best else None
        if kept is not None and kept.is_file():
            write_text_atomic(self.run_dir / predictions_file("validation"), kept.read_text(encoding="utf-8"))
        else:  # nothing to reuse: evaluate() generates the validation predictions again
            self._best_val_metrics = None

    def _evaluate(self, role: str) -> dict[str, float]:
        if not self.data.has(role):
            return {}
        scorer = PredictionScorer(self._examples(role), self.decode, self.rouge)
        trainer = self._trainer(scorer)
        output = trainer.predict(trainer.eval_dataset, metric_key_prefix="eval")
        scorer.write(self.run_dir / predictions_file(role))
        return from_trainer_logs(output.metrics, split_name(role))

    def _trainer(self, scorer: PredictionScorer, callbacks: Sequence = (), **datasets) -> SummarizationTrainer:
        args = self.training_arguments(Seq2SeqTrainingArguments, predict_with_generate=True,
                                       remove_unused_columns=False)  # keeps the prompts of decoder-only models
        trainer_class = CausalLMSummarizationTrainer if self.causal else SummarizationTrainer
        return trainer_class(
            model=self.model,
            args=args,
            data_collator=self.collator,
            eval_dataset=self._features(scorer.examples, with_prompt=True),
            processing_class=self.tokenizer,
            compute_metrics=scorer,
            callbacks=list(callbacks),
            optimizer_factory=self.optimizer_factory,
            scheduler_factory=self.scheduler_factory,
            **datasets,
        )

    def decode(self, generated: np.ndarray) -> list[str]:
        """Summaries from generated ids: without the decoder start token (seq2seq), cut at EOS, no padding."""
        texts = []
        for row in np.asarray(generated):
            ids = [int(i) for i in (row if self.causal else row[1:]) if i >= 0]  # -100 pads between batches
            end = next((k for k, i in enumerate(ids) if i in self.eos_ids), len(ids))
            ids = [i for i in ids[:end] if i != self.pad_id]
            texts.append(self.tokenizer.decode(ids, skip_special_tokens=True).strip())
        return texts


def seq2seq_features(batch: dict, tokenizer, source_length: int, target_length: int, start_id: int | None) -> dict:
    """The dialogue feeds the encoder, the summary is the label."""
    encoded = tokenizer(batch["source"], max_length=source_length, truncation=True)
    labels = tokenizer(text_target=batch["target"], max_length=target_length, truncation=True)
    # BERT2BERT labels open with [CLS], which is also the decoder's start input: as a target it only teaches
    # the model to repeat the start token.
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"],
            "labels": [ids[1:] if ids and ids[0] == start_id else ids for ids in labels["input_ids"]]}


def causal_features(batch: dict, tokenizer, source_length: int, target_length: int, separator: str, eos_id: int,
                    with_prompt: bool) -> dict:
    """One sequence `dialogue + separator + summary + EOS`, the loss on the summary only; `prompt_ids` (the
    dialogue and separator) is what generation starts from."""
    separator_ids = tokenizer(separator, add_special_tokens=False)["input_ids"]
    dialogues = tokenizer(batch["source"], add_special_tokens=False, max_length=source_length, truncation=True)
    summaries = tokenizer(batch["target"], add_special_tokens=False, max_length=target_length - 1, truncation=True)
    prompts = [ids + separator_ids for ids in dialogues["input_ids"]]
    endings = [ids + [eos_id] for ids in summaries["input_ids"]]
    features = {"input_ids": [p + e for p, e in zip(prompts, endings, strict=True)],
                "labels": [[IGNORE_INDEX] * len(p) + e for p, e in zip(prompts, endings, strict=True)]}
    if with_prompt:
        features["prompt_ids"] = prompts
    return features


class PredictionScorer:
    """compute_metrics for one split: decodes the predictions, scores them with ROUGE, keeps them for writing."""

    def __init__(self, examples: Examples, decode, rouge: Rouge):
        self.examples = examples
        self.decode = decode
        self.rouge = rouge
        self.predictions: list[str] | None = None

    def __call__(self, prediction) -> dict[str, float]:
        self.predictions = self.decode(prediction.predictions)
        return self.rouge.corpus(self.predictions, self.examples.references)

    def write(self, path: Path) -> None:
        e = self.examples
        rows = [{"id": i, "dialogue": d, "references": refs, "prediction": p}
                for i, d, refs, p in zip(e.ids, e.dialogues, e.references, self.predictions, strict=True)]
        write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


class PredictionsWithCheckpoints(TrainerCallback):
    """Writes the predictions of an evaluation into the checkpoint saved at the same step: they rotate with it
    and survive a resume, so the best checkpoint's predictions are at hand at the end."""

    def __init__(self, scorer: PredictionScorer):
        self.scorer = scorer
        self.evaluated_step: int | None = None

    def on_evaluate(self, args, state, control, **kwargs):
        self.evaluated_step = state.global_step

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if self.evaluated_step == state.global_step and folder.is_dir() and self.scorer.predictions is not None:
            self.scorer.write(folder / predictions_file(self.scorer.examples.role))


class SummarizationTrainer(ConfiguredOptimization, Seq2SeqTrainer):
    """Seq2SeqTrainer with the configured optimizer and learning-rate schedule."""

    def prediction_step(self, *args, **kwargs):
        output = super().prediction_step(*args, **kwargs)
        # Seq2SeqTrainer leaves max_length=20 in the generation config after generating; every later generate()
        # would then warn that it clashes with max_new_tokens (which wins anyway).
        self.model.generation_config.max_length = None
        return output


class CausalLMSummarizationTrainer(SummarizationTrainer):
    """Decoder-only: the loss over the whole sequence (the labels mask the prompt), predictions generated from the
    prompt alone (left-padded) and cut after it."""

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):
        prompt = {"input_ids": inputs.pop("prompt_ids", None), "attention_mask": inputs.pop("prompt_mask", None)}
        loss, _, _ = super().prediction_step(model, inputs, prediction_loss_only=True, ignore_keys=ignore_keys)
        if prediction_loss_only or prompt["input_ids"] is None or not self.args.predict_with_generate:
            return loss, None, None
        prompt = self._prepare_inputs(prompt)
        with torch.no_grad():
            generated = self.model.generate(**prompt, **(gen_kwargs or getattr(self, "_gen_kwargs", {})))
        # compute_metrics runs only when labels come back; the scores use the reference texts, not these.
        return loss, generated[:, prompt["input_ids"].shape[1]:], inputs["labels"].to(generated.device)


class CausalLMCollator:
    """Pads sequences and labels on the right; the generation prompts on the left, where generation continues."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = _pad([f["input_ids"] for f in features], self.pad_id, "right")
        labels, _ = _pad([f["labels"] for f in features], IGNORE_INDEX, "right")
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if "prompt_ids" in features[0]:
            batch["prompt_ids"], batch["prompt_mask"] = _pad([f["prompt_ids"] for f in features], self.pad_id, "left")
        return batch


def _pad(sequences: list[list[int]], value: int, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    tensors = [torch.tensor(s, dtype=torch.long) for s in sequences]
    padded = pad_sequence(tensors, batch_first=True, padding_value=value, padding_side=side)
    mask = pad_sequence([torch.ones_like(t) for t in tensors], batch_first=True, padding_value=0, padding_side=side)
    return padded, mask


def _checkpoint_prefix(config) -> str:
    """The input prefix a checkpoint was pretrained with for summarisation (t5-small: "summarize: "), else ""."""
    params = getattr(config, "task_specific_params", None) or {}
    return (params.get("summarization") or {}).get("prefix", "")


def _as_list(ids) -> list[int]:
    if ids is None:
        return []
    return list(ids) if isinstance(ids, list | tuple) else [ids]
