"""The rows of a summarisation split as text and as the token ids the trainer reads; the trainer, its collator and
the ROUGE scoring of its predictions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.utils.rnn import pad_sequence
from transformers import Seq2SeqTrainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from nlpexp.data import DataSpec
from nlpexp.io import write_jsonl_atomic
from nlpexp.task.rouge import Rouge

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
        write_jsonl_atomic(path, rows)


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


class SummarizationTrainer(Seq2SeqTrainer):
    """Decoder-only models: the loss over the whole sequence (the labels mask the prompt), predictions generated
    from the prompt alone (left-padded) and cut after it. Encoder-decoder models: Seq2SeqTrainer's own."""

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):
        if self.model.config.is_encoder_decoder:
            output = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys,
                                             **gen_kwargs)
        else:
            output = self._causal_prediction_step(model, inputs, prediction_loss_only, ignore_keys, gen_kwargs)
        # Seq2SeqTrainer leaves max_length=20 in the generation config after generating; every later generate()
        # would then warn that it clashes with max_new_tokens (which wins anyway).
        self.model.generation_config.max_length = None
        return output

    def _causal_prediction_step(self, model, inputs, prediction_loss_only, ignore_keys, gen_kwargs):
        prompt = {"input_ids": inputs.pop("prompt_ids", None), "attention_mask": inputs.pop("prompt_mask", None)}
        loss, _, _ = super().prediction_step(model, inputs, prediction_loss_only=True, ignore_keys=ignore_keys)
        if prediction_loss_only or prompt["input_ids"] is None or not self.args.predict_with_generate:
            return loss, None, None
        prompt = {key: tensor.to(self.args.device) for key, tensor in prompt.items()}
        with torch.no_grad():
            generated = self.model.generate(**prompt, **gen_kwargs)  # decoding: the model's generation config
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
