"""GPU-path trainer settings (issue #9): length-grouped batching and TF32 reach the trainers, or say why not."""

from __future__ import annotations

import functools
import logging

import pytest
import torch
import transformers
from sentence_transformers import SentenceTransformerTrainingArguments
from transformers import TrainingArguments

from nlpexp.errors import NlpexpError
from nlpexp.pipeline import run
from nlpexp.trainer import TrainerSettings

ADAMW = functools.partial(torch.optim.AdamW, lr=1e-4)


def _arguments(tmp_path, args_class=TrainingArguments, **settings):
    return TrainerSettings(**settings).training_arguments(args_class, tmp_path, "val/accuracy", True, ADAMW)


def test_group_by_length_sets_the_trainers_sampling_strategy(tmp_path):
    assert _arguments(tmp_path, group_by_length=True).train_sampling_strategy == "group_by_length"
    assert _arguments(tmp_path).train_sampling_strategy == "random"


def test_group_by_length_is_refused_where_sentence_transformers_batches(tmp_path):
    with pytest.raises(NlpexpError, match="task.batch_sampler"):
        _arguments(tmp_path, SentenceTransformerTrainingArguments, group_by_length=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU case")
def test_tf32_without_a_gpu_is_ignored_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="nlpexp"):
        arguments = _arguments(tmp_path, tf32=True)
    assert arguments.tf32 is None
    assert "trainer.tf32 needs an Ampere" in caplog.text


def test_a_classification_run_batches_by_length(compose_run, monkeypatch):
    built = []

    class Recording(transformers.trainer.LengthGroupedSampler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(transformers.trainer, "LengthGroupedSampler", Recording)
    metrics = run(compose_run("task=classification", "data=imdb", "model=tiny_bert", "debug=smoke",
                              "trainer.group_by_length=true"))
    assert built and "val/accuracy" in metrics
