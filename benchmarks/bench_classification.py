"""IMDB sentiment (seed 002's 8:1:1 split of all 50k reviews): MiniLM fine-tuned for 1 epoch, test accuracy and
wall time, written beside seed 002's own figures.

A whole epoch of the 40k training reviews is about 2 h on the 2-core CPU (16 x 128 tokens is ~3 s a step), so
by default the model trains on the first 4,000 shuffled training reviews (250 steps) and is scored on 2,000
validation and 2,000 test reviews, about 20 min; `--full` runs the whole epoch and the whole splits (a GPU's job).
`--quick` (or NLPEXP_BENCH_QUICK=1) trains on 200 reviews and evaluates on 100: it checks the script, its figures
mean nothing.
"""

from __future__ import annotations

import os

from common import bench_parser, run_job, write_results

NAME = "classification"
# Seed 002's README (bert-base-uncased / ModernBERT-base, up to 5 epochs, on its GPU): test accuracy.
SEED_002_FIGURES = {
    "bert-base-uncased": {"test/accuracy": 0.8944, "test/loss": 0.40028},
    "ModernBERT-base": {"test/accuracy": 0.9088, "test/loss": 0.4539},
    "bert-base-uncased, effective batch 64": {"test/accuracy": 0.89181, "test/loss": 0.33964},
    "bert-base-uncased, effective batch 256": {"test/accuracy": 0.8926, "test/loss": 0.34101},
    "bert-base-uncased, effective batch 1024": {"test/accuracy": 0.89399, "test/loss": 0.33792},
    "ModernBERT-base, effective batch 64": {"test/accuracy": 0.90407, "test/loss": 0.37052},
    "ModernBERT-base, effective batch 256": {"test/accuracy": 0.89834, "test/loss": 0.38951},
    "ModernBERT-base, effective batch 1024": {"test/accuracy": 0.90348, "test/loss": 0.35484},
}
OVERRIDES = ("experiment=imdb", "model=minilm", "trainer.max_epochs=1", "trainer.early_stopping_patience=null")
CPU_SLICE = ("data.max_train_samples=4000", "data.max_eval_samples=2000")
QUICK = ("data.max_train_samples=200", "data.max_eval_samples=100")


def device() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"CPU ({os.cpu_count()} cores)"


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--full", action="store_true", help="the whole epoch and the whole splits (a GPU's job)")
    args = parser.parse_args(argv)
    quick, full = args.quick, args.full
    overrides = OVERRIDES + (QUICK if quick else () if full else CPU_SLICE)
    result = run_job(*overrides)
    minilm = {key: result[key] for key in ("test/accuracy", "test/macro_f1", "test/loss", "val/accuracy",
                                           "time/total_s", "wall_s")}
    figures = {"quick": quick, "full": full and not quick, "device": device(),
               "command": f"python run.py {' '.join(overrides)}",
               "minilm_1_epoch": minilm, "seed_002": SEED_002_FIGURES}
    write_results(NAME, figures, table(figures))
    print(table(figures))
    return 0


def table(figures: dict) -> str:
    minilm = figures["minilm_1_epoch"]
    title = "IMDB sentiment, 8:1:1 split of all 50k reviews (seed 002)"
    training = "1 epoch of 40k reviews" if figures.get("full") else "4k reviews (250 steps)"
    if figures["quick"]:
        title += " — QUICK CHECK on 200 training reviews, not a result"
    elif not figures.get("full"):
        title += "; ours on a CPU slice: 4k training reviews, 2k validation and 2k test reviews"
    lines = [f"### {title}", "",
             "| model | training | test accuracy | test loss | wall time | where |",
             "|---|---|---|---|---|---|",
             f"| all-MiniLM-L6-v2 (nlpexp) | {training}, batch 16, Adam 5e-5 constant | "
             f"{minilm['test/accuracy']:.4f} | {minilm['test/loss']:.4f} | {minilm['wall_s']:.0f} s | "
             f"{figures['device']} |"]
    for model, reference in figures["seed_002"].items():
        lines.append(f"| {model} (seed 002) | up to 5 epochs | {reference['test/accuracy']:.4f} | "
                     f"{reference['test/loss']:.4f} | – | seed 002's GPU |")
    lines += ["", f"`{figures['command']}` (wall time: the whole process, data loading and evaluation included)."]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
