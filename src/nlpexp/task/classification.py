"""Text classification (seed 002): encoder -> pooled vector -> dropout -> linear head, trained with cross-entropy.

Runs on the transformers Trainer. A checkpoint, and best_model/, is one folder that `load_classifier(folder)`
reloads: the encoder's config.json, model.safetensors (encoder and head together, as the Trainer saves a
plain module), `classifier.json` (label names, pooling, dropout) and the tokenizer.
The model and its checkpoint files are nlpexp.task.classifier's, imported when the task runs (torch, transformers):
the schema reads the task's keys from this module.

A model that comes with its own classification head (a transformers `*ForSequenceClassification`, e.g. one given
to nlpexp.api.train) keeps it, in training and in mode=eval, unless `task.replace_head=true` (nlpexp.task.own_head).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from nlpexp import NlpexpError
from nlpexp.data.cache import cached_map
from nlpexp.metrics import from_trainer_logs, split_name
from nlpexp.rules import Num
from nlpexp.task import Task, own_head
from nlpexp.task.error_analysis import classification_scores, write_confusion_matrix, write_misclassified

if TYPE_CHECKING:
    from nlpexp.task.classifier import EncoderClassifier

log = logging.getLogger(__name__)

COLUMNS = ("text", "label")
POOLINGS = ("mean", "cls", "max")
ANALYSED_ROLE = "test"  # the split whose confusion matrix and misclassified rows are written


def load_classifier(folder: str | Path, trust_remote_code: bool = False) -> EncoderClassifier:
    """A trained classifier from a checkpoint or best_model/ folder."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel

    from nlpexp.task.classifier import HEAD_CONFIG, WEIGHTS, EncoderClassifier

    folder = Path(folder)
    if own_head.has_own_head(folder):
        return own_head.load(folder, trust_remote_code=trust_remote_code)
    if not (folder / HEAD_CONFIG).is_file() or not (folder / WEIGHTS).is_file():
        raise NlpexpError(f"{folder} holds no trained classifier ({HEAD_CONFIG} + {WEIGHTS}); evaluate a trained "
                          f"one with model.name_or_path=<run>/best_model or <run>/checkpoints/checkpoint-N")
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

    def __init__(self, *, dropout: Annotated[float, Num(0, 1, hi_open=True)] = 0.1, replace_head: bool = False,
                 **kwargs):
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
        from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

        from nlpexp.task.classifier import HeadConfigWithCheckpoints

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
            compute_metrics=lambda output: classification_scores(output.label_ids, output.predictions),
            callbacks=[*self.training_callbacks(), HeadConfigWithCheckpoints()])

    def _new_model(self) -> EncoderClassifier:
        import torch
        from transformers import AutoModel, set_seed

        from nlpexp.task.classifier import EncoderClassifier

        path = self.model_spec.path()
        if own_head.has_own_head(path) and not self.replace_head:
            return own_head.keep(path, self.data.label_names, self.model_spec.load_kwargs)
        if own_head.has_own_head(path):
            log.warning("task.replace_head=true: the model's own classification head is replaced by a new one "
                        "(pooling %s, %d labels)", self.model_spec.pooling, len(self.data.label_names))
        # fp32 master weights; precision= sets autocast
        encoder = AutoModel.from_pretrained(path, **self.model_spec.load_kwargs, dtype=torch.float32)
        # The head's initial weights depend on the seed alone, not on what was loaded before it.
        set_seed(self.trainer_settings.seed)
        return EncoderClassifier(encoder, self.data.label_names, self.dropout, self.model_spec.pooling)

    def new_parameters(self) -> list:
        from nlpexp.task.classifier import EncoderClassifier

        if self.mode != "train" or not isinstance(self.model, EncoderClassifier):
            return []  # a kept head was trained before: no new parameters
        return list(self.model.classifier.parameters())

    def train(self) -> None:
        from nlpexp.task.classifier import save_head_config

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
