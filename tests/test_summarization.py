"""Dialogue summarisation end to end on tiny random models: seq2seq and decoder-only, outputs, generation
settings, resume, batch-size back-off."""

from __future__ import annotations

import copy
import json
import logging

import pytest
import torch

from nlpexp import NlpexpError
from nlpexp.pipeline import run
from nlpexp.task.summarization.trainers import SummarizationTrainer

# Few, short, greedy generations keep the tiny random models (which never emit EOS) fast.
FAST = ("task=summarization", "data=dialogsum", "debug=smoke", "logger=none", "data.max_eval_samples=8",
        "generation.num_beams=1", "generation.max_new_tokens=8")
ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum", "rouge_sum")


def _read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def trained_bart(tmp_path_factory, data_root):
    from nlpexp.config import compose

    run_dir = tmp_path_factory.mktemp("summarization")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NLPEXP_DATA_DIR", str(data_root))
        metrics = run(compose([f"paths.output_dir={run_dir}", *FAST, "model=tiny_bart", "generation.num_beams=2"]))
    return run_dir, metrics


def test_seq2seq_writes_rouge_metrics_and_predictions(trained_bart):
    run_dir, metrics = trained_bart
    written = json.loads((run_dir / "metrics.json").read_text())
    assert written == metrics
    for split in ("val", "test"):
        for key in ROUGE_KEYS:
            assert 0.0 <= written[f"{split}/{key}"] <= (3.0 if key == "rouge_sum" else 1.0)
        assert f"{split}/loss" in written
    assert written["val/rouge_sum"] == pytest.approx(
        written["val/rouge1"] + written["val/rouge2"] + written["val/rougeL"])
    validation = _read_jsonl(run_dir / "predictions_validation.jsonl")
    test = _read_jsonl(run_dir / "predictions_test.jsonl")
    assert len(validation) == len(test) == 8
    assert set(validation[0]) == {"id", "dialogue", "references", "prediction"}
    assert validation[0]["id"] == "validation_0" and len(validation[0]["references"]) == 1
    assert len(test[0]["references"]) == 3  # DialogSum test: summary, summary2, summary3
    assert (run_dir / "best_model" / "generation_config.json").is_file()


def test_validation_predictions_are_the_best_checkpoints(trained_bart):
    run_dir, _ = trained_bart
    state = json.loads(sorted((run_dir / "checkpoints").glob("checkpoint-*"))[-1].joinpath(
        "trainer_state.json").read_text())
    best = run_dir / "checkpoints" / state["best_model_checkpoint"].rsplit("/", 1)[-1]
    kept = best / "predictions_validation.jsonl"
    assert kept.read_text() == (run_dir / "predictions_validation.jsonl").read_text()


def test_best_model_evaluates_to_the_reported_validation_numbers(trained_bart, compose_run):
    """mode=eval of best_model/ generates again and scores exactly what training reported."""
    run_dir, metrics = trained_bart
    again = run(compose_run(*FAST, "model=tiny_bart", "generation.num_beams=2", "mode=eval",
                            f"model.name_or_path={run_dir / 'best_model'}", "model.random_init=null",
                            "model.tokenizer=null"))
    for key in ("val/rouge_sum", "val/rougeLsum", "val/loss"):
        assert again[key] == pytest.approx(metrics[key], abs=1e-5)


def test_decoder_only_end_to_end(compose_run, tmp_path):
    run_dir = tmp_path / "gpt2"
    metrics = run(compose_run(*FAST, "model=tiny_gpt2", run_dir=run_dir))
    for key in ROUGE_KEYS:
        assert f"val/{key}" in metrics and f"test/{key}" in metrics
    rows = _read_jsonl(run_dir / "predictions_test.jsonl")
    assert len(rows) == 8 and all(isinstance(r["prediction"], str) for r in rows)


def _set_up_task(cfg, run_dir):
    from nlpexp.config import instantiate

    task = instantiate(cfg.task, model=instantiate(cfg.model), data=instantiate(cfg.data),
                       trainer=instantiate(cfg.trainer), optimizer=instantiate(cfg.optimizer),
                       scheduler=instantiate(cfg.scheduler), run_dir=run_dir)
    task.setup()
    return task


def test_features_are_cached_and_reused_by_the_next_run(compose_run, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NLPEXP_CACHE_DIR", str(tmp_path / "cache"))
    caplog.set_level(logging.INFO, logger="nlpexp.data.cache")
    cfg = compose_run(*FAST, "model=tiny_gpt2", run_dir=tmp_path)
    _set_up_task(cfg, tmp_path)
    caplog.clear()
    task = _set_up_task(cfg, tmp_path)
    assert "tokenised train: reused cache" in caplog.text
    validation = task._examples("validation")
    # The same rows with and without the generation prompt are two cache files, not one read back for both.
    assert "prompt_ids" in task._features(validation, with_prompt=True).column_names
    assert "prompt_ids" not in task._features(validation, with_prompt=False).column_names
    assert len(list((tmp_path / "cache").glob("*.arrow"))) == 3


def test_decoder_only_loss_covers_the_summary_only(compose_run, tmp_path):
    task = _set_up_task(compose_run(*FAST, "model=tiny_gpt2", run_dir=tmp_path), tmp_path)
    example = task.train_set[0]
    prompt_length = example["labels"].count(-100)
    summary = task._examples("train").references[0][0]
    assert example["labels"][:prompt_length] == [-100] * prompt_length
    assert example["labels"][prompt_length:] == example["input_ids"][prompt_length:]
    assert example["labels"][prompt_length:-1] == task.tokenizer(summary, add_special_tokens=False)["input_ids"]
    assert example["labels"][-1] == 102  # the model's EOS ([SEP]) ends the summary


@pytest.mark.parametrize("model,first_label", [("tiny_bert2bert", "summary"), ("tiny_bart", "[CLS]")])
def test_seq2seq_labels_do_not_repeat_the_decoder_start(compose_run, tmp_path, model, first_label):
    """BERT2BERT starts decoding from [CLS]: its labels begin with the summary; BART-style ones (start = EOS)
    keep their BOS, as those models were trained."""
    task = _set_up_task(compose_run(*FAST, f"model={model}", run_dir=tmp_path), tmp_path)
    labels = task.train_set[0]["labels"]
    summary = task.tokenizer(task._examples("train").references[0][0], add_special_tokens=False)["input_ids"]
    assert labels[-1] == 102  # [SEP] ends the summary
    assert labels[:-1] == (summary if first_label == "summary" else [101, *summary])


def test_t5_task_prefix_comes_from_the_checkpoint(compose_run, tmp_path, monkeypatch):
    from nlpexp.model import ModelSpec

    original = ModelSpec.generative_model

    def like_t5_small(self):  # t5-small's config carries its summarisation prefix
        model = original(self)
        model.config.task_specific_params = {"summarization": {"prefix": "summarize: "}}
        return model

    monkeypatch.setattr(ModelSpec, "generative_model", like_t5_small)
    task = _set_up_task(compose_run(*FAST, "model=tiny_t5", run_dir=tmp_path), tmp_path)
    assert task.tokenizer.decode(task.train_set[0]["input_ids"]).startswith("[CLS] summarize : # person")
    task = _set_up_task(compose_run(*FAST, "model=tiny_t5", "task.source_prefix=''", run_dir=tmp_path), tmp_path)
    assert task.tokenizer.decode(task.train_set[0]["input_ids"]).startswith("[CLS] # person")


@pytest.mark.parametrize("model", ["bart", "kobart", "t5", "mt5", "kogpt2"])
def test_hub_models_fail_offline_with_one_line(model):
    from nlpexp.config import compose, instantiate

    spec = instantiate(compose(["paths.output_dir=unused", f"model={model}"]).model)
    with pytest.raises(NlpexpError) as err:
        spec.generative_model()
    assert "\n" not in str(err.value) and spec.name_or_path in str(err.value)


def test_early_stopping_ends_training_without_improvement(compose_run, tmp_path):
    """A random model scores the same ROUGE at steps 2 and 4: with patience 1 the run stops at step 4 of 8."""
    run_dir = tmp_path / "early"
    run(compose_run(*FAST, "model=tiny_bart", "trainer.max_steps=8", "trainer.early_stopping_patience=1",
                    run_dir=run_dir))
    checkpoints = sorted(int(p.name.rsplit("-", 1)[-1]) for p in (run_dir / "checkpoints").glob("checkpoint-*"))
    assert checkpoints[-1] == 4


class GenerateSpy:
    """Records the GenerationConfig and the output length of every generate() call."""

    def __init__(self, monkeypatch):
        from transformers.generation.utils import GenerationMixin

        self.calls = []
        original = GenerationMixin.generate

        def spy(model, *args, **kwargs):
            output = original(model, *args, **kwargs)
            prompt = kwargs.get("input_ids")
            self.calls.append((copy.deepcopy(model.generation_config), kwargs, output, prompt))
            return output

        monkeypatch.setattr(GenerationMixin, "generate", spy)


@pytest.mark.parametrize("model,causal", [("tiny_bart", False), ("tiny_gpt2", True)])
def test_generation_overrides_reach_generate(compose_run, monkeypatch, model, causal):
    spy = GenerateSpy(monkeypatch)
    run(compose_run(*FAST, f"model={model}", "mode=eval", "generation.num_beams=3", "generation.max_new_tokens=5",
                    "generation.no_repeat_ngram_size=2", "generation.length_penalty=0.6",
                    "generation.early_stopping=false"))
    assert spy.calls
    for config, kwargs, output, prompt in spy.calls:
        assert (config.num_beams, config.max_new_tokens, config.no_repeat_ngram_size) == (3, 5, 2)
        assert (config.length_penalty, config.early_stopping) == (0.6, False)
        assert not {"num_beams", "max_new_tokens", "max_length"} & set(kwargs)
        new_tokens = output.shape[1] - (prompt.shape[1] if causal else 1)  # seq2seq: + decoder start
        assert new_tokens <= 5


def test_resume_continues_from_the_checkpoint_step(compose_run, tmp_path, monkeypatch):
    run_dir = tmp_path / "resumed"
    run(compose_run(*FAST, "model=tiny_bart", run_dir=run_dir))  # 4 steps, checkpoints at 2 and 4
    steps = []
    original = SummarizationTrainer.training_step

    def counting(self, *args, **kwargs):
        steps.append(self.state.global_step)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SummarizationTrainer, "training_step", counting)
    run(compose_run(*FAST, "model=tiny_bart", "trainer.max_steps=6", "trainer.resume=true", run_dir=run_dir))
    assert steps == [4, 5]  # global_step before each of the two remaining steps
    state = json.loads((run_dir / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6


def test_batch_size_backs_off_on_out_of_memory(compose_run, tmp_path, monkeypatch):
    original = SummarizationTrainer.training_step
    sizes = []

    def small_memory(self, model, inputs, *args, **kwargs):
        sizes.append(inputs["input_ids"].shape[0])
        if inputs["input_ids"].shape[0] > 4:  # 5 does not fit
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(SummarizationTrainer, "training_step", small_memory)
    run_dir = tmp_path / "oom"
    run(compose_run(*FAST, "model=tiny_bart", "trainer.batch_size=5", "trainer.auto_find_batch_size=true",
                    run_dir=run_dir))
    assert sizes[0] == 5 and set(sizes[1:]) == {4}  # accelerate retries with 90% of the batch size
    state = json.loads((run_dir / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["train_batch_size"] == 4


def test_korean_evaluation_only_data(compose_run, tmp_path):
    """ko_dialogsum has validation only: mode=eval scores it; training on it asks for a train split."""
    metrics = run(compose_run(*FAST, "model=tiny_bart", "data=ko_dialogsum", "mode=eval"))
    assert "val/rouge_sum" in metrics and not any(k.startswith("test/") for k in metrics)
    rows = _read_jsonl(tmp_path / "run" / "predictions_validation.jsonl")
    assert any("가" <= ch <= "힣" for ch in rows[0]["dialogue"] + rows[0]["references"][0])  # Hangul
    with pytest.raises(NlpexpError, match="no 'train' split"):
        run(compose_run(*FAST, "model=tiny_bart", "data=ko_dialogsum", run_dir=tmp_path / "train"))


def test_any_csv_with_mapped_columns(compose_run, tmp_path, monkeypatch):
    import pandas as pd

    folder = tmp_path / "data" / "dialogsum"
    folder.mkdir(parents=True)
    frame = pd.DataFrame({"conversation": ["A: hi there\nB: hello, how are you?"] * 6,
                          "abstract": ["A and B greet each other."] * 6})
    for split in ("train", "validation"):
        frame.to_csv(folder / f"{split}.csv", index=False)
    monkeypatch.setenv("NLPEXP_DATA_DIR", str(tmp_path / "data"))
    metrics = run(compose_run(*FAST, "model=tiny_bart", "~data.splits.test", "+data.columns.dialogue=conversation",
                              "+data.columns.summary=abstract"))
    assert "val/rouge_sum" in metrics
    rows = _read_jsonl(tmp_path / "run" / "predictions_validation.jsonl")
    assert rows[0]["id"] == "validation-0" and rows[0]["references"] == ["A and B greet each other."]


def test_training_needs_a_validation_split(compose_run):
    with pytest.raises(NlpexpError, match="no validation split"):
        run(compose_run(*FAST, "model=tiny_bart", "~data.splits.validation"))


def test_a_loss_is_refused_before_anything_loads(compose_run):
    with pytest.raises(NlpexpError, match="takes no loss"):
        run(compose_run(*FAST, "model=tiny_bart", "loss=softmax"))


def test_encoder_only_model_is_refused_with_the_way_out(compose_run):
    with pytest.raises(NlpexpError, match="build=encoder_decoder"):
        run(compose_run(*FAST, "model=tiny_bert", "mode=eval"))


@pytest.mark.parametrize("model", [pytest.param("tiny_t5", marks=pytest.mark.slow),
                                   pytest.param("tiny_mt5", marks=pytest.mark.slow), "tiny_bert2bert"])
def test_other_architectures_train(compose_run, model):
    metrics = run(compose_run(*FAST, f"model={model}"))
    assert "val/rouge_sum" in metrics and "test/rouge_sum" in metrics


def test_a_trained_random_init_encoder_decoder_reloads(compose_run, tmp_path):
    """tiny_bert2bert is random-init BERT halves; its best_model/ is a saved EncoderDecoderModel, which mode=eval
    with model.name_or_path loads as it is (its config, not the random-init one) to the same validation scores."""
    trained = run(compose_run(*FAST, "model=tiny_bert2bert"))
    again = run(compose_run(*FAST, "model=tiny_bert2bert", "mode=eval",
                            f"model.name_or_path={tmp_path / 'run' / 'best_model'}", run_dir=tmp_path / "eval"))
    assert again["val/rouge_sum"] == pytest.approx(trained["val/rouge_sum"])
