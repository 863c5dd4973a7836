"""Text classification (seed 002): encoder -> pooled vector -> dropout -> linear head, trained with cross-entropy.

Runs on the transformers Trainer. A checkpoint, and best_model/, is one folder that `load_classifier(folder)`
reloads: the encoder's config.json, model.safetensors (encoder and head together, as the Trainer saves a
plain module), `classifier.json` (label names, pooling, dropout) and the tokenizer.

A model that comes with its own classification head (a transformers `*ForSequenceClassification`, e.g. one given
to nlpexp.api.train) keeps it, in training and in mode=eval, unless `task.replace_head=true` (nlpexp.task.own_head).
"""

from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import (
    AutoConfig,
    AutoModel,
    DataCollatorWithPadding,
    EvalPrediction,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.modeling_outputs import SequenceClassifierOutput

from nlpexp import NlpexpError
from nlpexp.data.cache import cached_map
from nlpexp.metrics import from_trainer_logs, split_name
from nlpexp.task import Task, own_head
from nlpexp.task.error_analysis import classification_scores, write_confusion_matrix, write_misclassified

log = logging.getLogger(__name__)

COLUMNS = ("text", "label")
HEAD_CONFIG = "classifier.json"
WEIGHTS = "model.safetensors"  # the name the Trainer gives a plain module's state dict
POOLINGS = ("mean", "cls", "max")
ANALYSED_ROLE = "test"  # the split whose confusion matrix and misclassified rows are written


class EncoderClassifier(torch.nn.Module):
    """logits = W · dropout(pool(encoder(text))) + b; the loss is cross-entropy when labels are given."""

    def __init__(self, encoder, label_names: list[str], dropout: float = 0.1, pooling: str = "mean"):
        super().__init__()  # pooling: one of POOLINGS (ClassificationTask.validate; classifier.json as it wrote it)
        self.encoder = encoder
        self.dropout = torch.nn.Dropout(dropout)
        self.classifier = torch.nn.Linear(encoder.config.hidden_size, len(label_names))
        self.label_names = list(label_names)
        self.pooling = pooling
        # ModernBERT has no token types; a BERT tokenizer in front of it still produces them.
        self.takes_token_types = "token_type_ids" in inspect.signature(encoder.forward).parameters

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None) -> SequenceClassifierOutput:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and self.takes_token_types:
            inputs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**inputs).last_hidden_state
        logits = self.classifier(self.dropout(pool(hidden, attention_mask, self.pooling)))
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def head_config(self) -> dict:
        return {"label_names": self.label_names, "pooling": self.pooling, "dropout": self.dropout.p}


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None, mode: str) -> torch.Tensor:
    if mode == "cls" or attention_mask is None:
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def load_classifier(folder: str | Path, trust_remote_code: bool = False) -> EncoderClassifier:
    """A trained classifier from a checkpoint or best_model/ folder."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if own_head.has_own_head(folder):
        return own_head.load(folder, trust_remote_code=trust_remote_code)
    if not (folder / HEAD_CONFIG).is_file() or not (folder / WEIGHTS).is_file():
        raise NlpexpError(
            f"{folder} holds no trained classifier ({HEAD_CONFIG} + {WEIGHTS}); evaluate a trained one with "
            f"model.name_or_path=<run>/best_model or <run>/checkpoints/checkpoint-N"
        )
    head = json.loads((folder / HEAD_CONFIG).read_text())
    config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    encoder = AutoModel.from_config(config, trust_remote_code=trust_remote_code)
    model = EncoderClassifier(encoder, head["label_names"], head["dropout"], head["pooling"])
    model.load_state_dict(load_file(str(folder / WEIGHTS)))
    return model


class ClassificationTask(Task):
    name = "classification"
    needs_labels = True
    needs_validation = True
    labelled_data = "e.g. data=imdb|nsmc"

    def __init__(self, *, dropout: float = 0.1, replace_head: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.dropout = dropout
        self.replace_head = replace_head  # a model with its own classification head: put nlpexp's on instead
        self._features: dict[str, object] = {}  # tokenised splits, by role: each is tokenised (or read) once

    def validate(self) -> None:
        super().validate()
        if self.mode == "train" and self.model_spec.pooling not in POOLINGS:
            raise NlpexpError(f"task=classification pools the encoder output with model.pooling in {POOLINGS}, "
                              f"got {self.model_spec.pooling!r}")

    def setup(self) -> None:
        self.tokenizer = self.model_spec.load_tokenizer()
        if self.mode == "train":
            self.model = self._new_model()
            train_set, val_set = self._tokenized("train"), self._tokenized("validation")
        else:
            self.model = load_classifier(self.model_spec.path(), self.model_spec.trust_remote_code)
            own_head.name_default_labels(self.model, self.data.label_names)
            if self.model.label_names != list(self.data.label_names):
                raise NlpexpError(f"the model was trained on labels {self.model.label_names} but data "
                                  f"'{self.data.name}' has {list(self.data.label_names)}")
            train_set = val_set = None
        args = self.training_arguments(TrainingArguments)
        # One trainer for training and for every evaluation: in eval mode it only predicts.
        self.trainer = self.make_trainer(
            Trainer, args, model=self.model, train_dataset=train_set, eval_dataset=val_set,
            processing_class=self.tokenizer, data_collator=DataCollatorWithPadding(self.tokenizer),
            compute_metrics=compute_metrics, callbacks=[*self.training_callbacks(), HeadConfigWithCheckpoints()])

    def _new_model(self) -> EncoderClassifier:
        path = self.model_spec.path()
        if own_head.has_own_head(path) and not self.replace_head:
            return own_head.keep(path, self.data.label_names, self.model_spec.load_kwargs)
        if own_head.has_own_head(path):
            log.warning("task.replace_head=true: the model's own classification head is replaced by a new one "
                        "(pooling %s, %d labels)", self.model_spec.pooling, len(self.data.label_names))
        encoder = AutoModel.from_pretrained(self.model_spec.path(), **self.model_spec.load_kwargs,
                                            dtype=torch.float32)  # fp32 master weights; precision= sets autocast
        # The head's initial weights depend on the seed alone, not on what was loaded before it.
        set_seed(self.trainer_settings.seed)
        return EncoderClassifier(encoder, self.data.label_names, self.dropout, self.model_spec.pooling)

    def new_parameters(self) -> list:
        if self.mode != "train" or not isinstance(self.model, EncoderClassifier):
            return []  # a kept head was trained before: no new parameters
        return list(self.model.classifier.parameters())

    def train(self) -> None:
        self.run_trainer(self.trainer)
        self.trainer.save_model(str(self.best_model_dir))
        if self.trainer.args.should_save:
            save_head_config(self.model, self.best_model_dir)

    def score(self, role: str) -> dict[str, float]:
        output = self.trainer.predict(self._tokenized(role), metric_key_prefix="eval")
        if role == ANALYSED_ROLE:
            write_confusion_matrix(self.run_dir, output.label_ids, output.predictions, self.model.label_names,
                                   split_name(role))
            write_misclassified(self.run_dir / "misclassified.jsonl", list(self._rows(role)["text"]),
                                output.label_ids, output.predictions, self.model.label_names)
        return from_trainer_logs(output.metrics, split_name(role))

    def _rows(self, role: str):
        return self.data.load(role, COLUMNS, text_columns=COLUMNS[:1])

    def _tokenized(self, role: str):
        if role not in self._features:
            self._features[role] = cached_map(
                self._rows(role), tokenize, self.tokenizer, cache_dir=self.cache_dir, label=role,
                settings={"max_length": self.model_spec.max_seq_length}, remove_columns=["text"])
        return self._features[role]


def tokenize(batch: dict, tokenizer, max_length: int) -> dict:
    return tokenizer(batch["text"], truncation=True, max_length=max_length)


def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
    return classification_scores(prediction.label_ids, prediction.predictions)


def save_head_config(model, folder: Path) -> None:
    """Next to the weights the Trainer writes, what it takes to rebuild nlpexp's classifier from the folder."""
    if isinstance(model, EncoderClassifier):
        model.encoder.config.save_pretrained(folder)
        (folder / HEAD_CONFIG).write_text(json.dumps(model.head_config(), indent=2, ensure_ascii=False) + "\n")


class HeadConfigWithCheckpoints(TrainerCallback):
    """Every checkpoint a folder load_classifier() reloads."""

    def on_save(self, args, state, control, model=None, **kwargs):
        if args.should_save:
            save_head_config(model, Path(args.output_dir) / f"checkpoint-{state.global_step}")
