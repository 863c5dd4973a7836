"""The model of task=classification (nlpexp.task.classification): an encoder, pooling, dropout and a linear head, and
what makes each checkpoint a folder load_classifier() reloads. Imported when the task runs: it imports torch and
transformers.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import TrainerCallback
from transformers.modeling_outputs import SequenceClassifierOutput

HEAD_CONFIG = "classifier.json"
WEIGHTS = "model.safetensors"  # the name the Trainer gives a plain module's state dict


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


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None, mode: str) -> torch.Tensor:
    if mode == "cls" or attention_mask is None:
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def save_head_config(model, folder: Path) -> None:
    """Next to the weights the Trainer writes, what it takes to rebuild nlpexp's classifier from the folder."""
    if isinstance(model, EncoderClassifier):
        model.encoder.config.save_pretrained(folder)
        head = {"label_names": model.label_names, "pooling": model.pooling, "dropout": model.dropout.p}
        (folder / HEAD_CONFIG).write_text(json.dumps(head, indent=2, ensure_ascii=False) + "\n")


class HeadConfigWithCheckpoints(TrainerCallback):
    """Every checkpoint a folder load_classifier() reloads."""

    def on_save(self, args, state, control, model=None, **kwargs):
        if args.should_save:
            save_head_config(model, Path(args.output_dir) / f"checkpoint-{state.global_step}")
