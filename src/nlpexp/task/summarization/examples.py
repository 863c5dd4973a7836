"""The rows of a summarisation split as text, and as the token ids the trainers read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nlpexp.data import DataSpec

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
