"""GPU-path trainer settings (issues #9, #20): length-grouped batching, TF32 and precision=auto reach the trainers,
or say why not."""

from __future__ import annotations

import functools
import logging

import pytest
import torch
import transformers
from sentence_transformers import SentenceTransformerTrainingArguments
from transformers import TrainingArguments

from nlpexp import NlpexpError
from nlpexp.pipeline import run
from nlpexp.trainer import TrainerSettings, auto_precision

ADAMW = functools.partial(torch.optim.AdamW, lr=1e-4)


def _arguments(tmp_path, args_class=TrainingArguments, **settings):
    return TrainerSettings(**settings).training_arguments(args_class, tmp_path, "val/accuracy", True, ADAMW)


def test_group_by_length_sets_the_trainers_sampling_strategy(tmp_path):
    assert _arguments(tmp_path, group_by_length=True).train_sampling_strategy == "group_by_length"
    assert _arguments(tmp_path).train_sampling_strategy == "random"


def test_group_by_length_leaves_the_sentence_transformers_arguments_to_the_batching_mixin(tmp_path):
    # nlpexp.trainer.batching's sampler does the grouping there (tests/test_batching.py).
    arguments = _arguments(tmp_path, SentenceTransformerTrainingArguments, group_by_length=True,
                           max_tokens_per_batch=4096)
    assert arguments.train_sampling_strategy == "random"


def test_a_token_budget_is_refused_for_the_transformers_trainer(tmp_path):
    with pytest.raises(NlpexpError, match="trainer.max_tokens_per_batch works with the sentence-transformers"):
        _arguments(tmp_path, max_tokens_per_batch=4096)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU case")
def test_precision_auto_trains_in_fp32_on_the_cpu(tmp_path):
    arguments = _arguments(tmp_path, precision="auto")
    assert not arguments.bf16 and not arguments.fp16
    assert auto_precision() == "32"


@pytest.mark.parametrize(("native_bf16", "expected"), [(True, "bf16"), (False, "fp16"), (None, "32")])
def test_precision_auto_picks_what_the_gpu_computes_in(native_bf16, expected):
    assert auto_precision(lambda: native_bf16) == expected


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


def test_model_only_checkpoints_hold_no_optimizer_state_and_are_not_resumed(compose_run, tmp_path):
    """trainer.save_only_model=true (the sweep presets' setting): each checkpoint holds the model and the trainer
    state, no optimizer, scheduler or RNG state, its seal says so, and resuming from it is refused in one line
    rather than silently restarting the optimizer."""
    from nlpexp.trainer.checkpoints import read_seal

    args = ("task=sbert_nli", "model=tiny_bert", "debug=smoke", "logger=none")
    run(compose_run(*args, "trainer.save_only_model=true"))
    checkpoints = sorted((tmp_path / "run" / "checkpoints").glob("checkpoint-*"))
    assert checkpoints
    for checkpoint in checkpoints:
        names = {p.name for p in checkpoint.iterdir()}
        assert "model.safetensors" in names and "trainer_state.json" in names
        assert not names & {"optimizer.pt", "scheduler.pt", "rng_state.pth"}
        assert read_seal(checkpoint)["model_only"] is True
    with pytest.raises(NlpexpError, match=r"^trainer.resume: .*checkpoint-\d+ holds the model only \(saved with "
                                          r"trainer.save_only_model=true\)"):
        run(compose_run(*args, "trainer.resume=true"))


def test_full_checkpoints_are_sealed_as_resumable(tmp_path):
    from nlpexp.trainer.checkpoints import read_seal, seal

    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-2" / "optimizer.pt").write_bytes(b"state")
    seal(tmp_path / "checkpoint-2", 2, 1.0, {"task": "T"})
    assert read_seal(tmp_path / "checkpoint-2")["model_only"] is False
