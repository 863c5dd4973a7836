"""The best model as an MLflow model of its own flavor (docs/scaling.md), which a registry version points at
(nlpexp.registry_mlflow): `sentence_transformers` for a sentence-transformers model, else a `python_function`
model (TextModel) whose predict takes texts and returns labels (task=classification) or summaries
(task=summarization), loaded with nlpexp's own code: served from nlpexp's environment (`--env-manager local`).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.pyfunc
from mlflow.utils.logging_utils import suppress_logs

from nlpexp.registry_mlflow import DATA_DIRS

PINS = ("mlflow", "transformers", "torch")


def save(model_dir: Path, target: Path, config: Mapping[str, Any]) -> str | None:
    """Write `model_dir` as an MLflow model in `target` (absent): its kind, or None when nlpexp knows no flavor
    for it. `config`: the run's, whose settings a summariser generates with (source_prefix, ...)."""
    from nlpexp.task import own_head

    if (model_dir / "modules.json").is_file():
        from mlflow.sentence_transformers import save_model as save_sentence_transformer
        from sentence_transformers import SentenceTransformer

        # Pinned to what trained it: no requirement inference (it would load the model again in a subprocess).
        save_sentence_transformer(SentenceTransformer(str(model_dir), device="cpu"), str(target),
                                  pip_requirements=_pins(*PINS, "sentence-transformers"))
        for extra in model_dir.iterdir():  # the task's own files (e.g. sbert_nli's nli_head): nlpexp reloads them
            if not (target / DATA_DIRS[0] / extra.name).exists():
                (shutil.copytree if extra.is_dir() else shutil.copy2)(extra, target / DATA_DIRS[0] / extra.name)
        return "sentence_transformers"
    kind = "classifier" if (model_dir / "classifier.json").is_file() or own_head.has_own_head(model_dir) else \
        "summarizer" if (model_dir / "generation_config.json").is_file() else None
    if kind is not None:
        task, model = config.get("task") or {}, config.get("model") or {}
        settings = {"source_prefix": task.get("source_prefix"), "max_source_length": model.get("max_seq_length"),
                    "prompt_separator": task.get("prompt_separator"), "kind": kind}
        # mlflow.pyfunc's warning on every pickled python_model: ours is pickled by design, nlpexp loads it
        with suppress_logs("mlflow.pyfunc", re.compile("Passing a Python object as `python_model`")):
            mlflow.pyfunc.save_model(str(target), python_model=TextModel(), artifacts={"model": str(model_dir)},
                                     model_config={k: v for k, v in settings.items() if v is not None},
                                     pip_requirements=_pins(*PINS))
    return kind


class TextModel(mlflow.pyfunc.PythonModel):
    """texts -> their predicted label names (kind classifier: nlpexp.task.classification.load_classifier's model)
    or their summaries (kind summarizer: with the generation settings saved beside the weights, the run's
    source_prefix and, decoder-only, its prompt_separator)."""

    def load_context(self, context):
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        from nlpexp.task.classification import load_classifier

        folder, self.settings = context.artifacts["model"], context.model_config
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.causal = not json.loads((Path(folder) / "config.json").read_text()).get("is_encoder_decoder", False)
        auto = AutoModelForCausalLM if self.causal else AutoModelForSeq2SeqLM
        self.model = (load_classifier(folder) if self.settings["kind"] == "classifier" else
                      auto.from_pretrained(folder)).eval()

    def predict(self, context, model_input: list[str], params=None) -> list[str]:
        import torch

        with torch.no_grad():
            if self.settings["kind"] != "classifier":
                return [self._summary(text) for text in model_input]
            logits = self.model(**self.tokenizer(list(model_input), truncation=True, padding=True,
                                                 return_tensors="pt")).logits
        return [self.model.label_names[i] for i in logits.argmax(-1).tolist()]

    def _summary(self, text: str) -> str:
        """One at a time: no padding side to get right for either kind of model."""
        import torch

        tasks = getattr(self.model.config, "task_specific_params", None) or {}  # e.g. t5's "summarize: "
        prefix = self.settings.get("source_prefix", (tasks.get("summarization") or {}).get("prefix", ""))
        length = self.settings.get("max_source_length")
        ids = self.tokenizer(prefix + text, truncation=length is not None, max_length=length,
                             add_special_tokens=not self.causal)["input_ids"]
        if self.causal:
            separator = self.settings.get("prompt_separator", " TL;DR: ")
            ids += self.tokenizer(separator, add_special_tokens=False)["input_ids"]
        out = self.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long))
        return self.tokenizer.decode(out[0][len(ids):] if self.causal else out[0], skip_special_tokens=True).strip()


def _pins(*packages: str) -> list[str]:
    return [f"{p}=={metadata.version(p)}" for p in packages]
