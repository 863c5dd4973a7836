"""A classifier that comes with its own head: a transformers `*ForSequenceClassification` model (a fine-tuned hub
model, or one given to nlpexp.api.train). task=classification keeps that head, trains it further and evaluates
it (mode=eval) as it is, instead of putting a new, untrained one on its encoder; `task.replace_head=true` does
replace it, and says so. Its folder is the transformers one (config.json with `id2label`, model.safetensors): no
classifier.json. The model gets a `label_names` attribute, as nlpexp's EncoderClassifier has.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from nlpexp import NlpexpError

log = logging.getLogger(__name__)
HEAD_CONFIG = "classifier.json"  # nlpexp's own head (classifier.HEAD_CONFIG): that one wins
DEFAULT_LABEL = re.compile(r"LABEL_\d+")  # transformers' names when a model was made without label names


def has_own_head(folder: str | Path) -> bool:
    """The folder holds a transformers sequence classifier (and not nlpexp's EncoderClassifier)."""
    folder = Path(folder)
    config = folder / "config.json"
    if (folder / HEAD_CONFIG).is_file() or not config.is_file():
        return False
    try:
        architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError):
        return False
    return any(name.endswith("ForSequenceClassification") for name in architectures)


def load(folder: str | Path, trust_remote_code: bool = False, use_safetensors: bool = True):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        str(folder), trust_remote_code=trust_remote_code, use_safetensors=use_safetensors)
    model.label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return model


def keep(folder: str | Path, label_names, load_kwargs: dict):
    """The model with its head, to train further on `label_names` (the data's)."""
    import torch

    model = load(folder, load_kwargs["trust_remote_code"], load_kwargs["use_safetensors"])
    model.to(torch.float32)  # fp32 master weights; precision= sets autocast
    name_default_labels(model, label_names)
    if model.label_names != list(label_names):
        raise NlpexpError(f"model.name_or_path: the model's own head predicts {model.label_names} but the data has "
                          f"{list(label_names)}; task.replace_head=true trains a new head instead")
    log.info("keeping the model's own classification head (%s, labels %s); task.replace_head=true would replace "
             "it", type(model).__name__, ", ".join(model.label_names))
    return model


def name_default_labels(model, label_names) -> None:
    """A head whose labels are transformers' defaults (LABEL_0, LABEL_1...) and as many as the data's takes the
    data's names, also in its config (so that its saved folder names them)."""
    names = getattr(model, "label_names", None)
    config = getattr(model, "config", None)
    if config is None or names is None or len(names) != len(label_names):
        return
    if all(DEFAULT_LABEL.fullmatch(str(n)) for n in names):
        model.label_names = list(label_names)
        config.id2label = dict(enumerate(label_names))
        config.label2id = {name: i for i, name in enumerate(label_names)}
