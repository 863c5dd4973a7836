"""GPU benchmark (issue 30, item 5): nlpexp against the plain libraries at GPU batch sizes, one prepared script.

Two workloads, each run several ways, every run a fresh process (as a user starts it):
  mnrl  seed 004's MNRL recipe (`experiment=embedding_mnrl_reference`: every NLI pair a positive) against plain
        sentence-transformers (benchmarks/plain_st_reference.py all_pairs); metric: STSb validation spearman_cosine.
  imdb  IMDB classification (`experiment=imdb model=minilm`, 1 epoch) against plain transformers
        (benchmarks/plain_hf_classification.py); metric: test accuracy.
Each nlpexp run at fp32 and `trainer.precision=auto` (bf16 on Ampere or newer), plain and length-grouped; the
plain libraries at fp32 and bf16 (and transformers' own group_by_length). Reported: train samples/s (the
trainers' own figure, steps only) and the metric. Sized for about 8 min of an H100 (`--budget` trims IMDB).

    python benchmarks/gpu.py                       # on the GPU machine; results to benchmarks/results/gpu.{json,md}
    python benchmarks/gpu.py --only mnrl           # one workload
    python benchmarks/gpu.py --tiny --out DIR      # a CPU plumbing check: tiny model, tiny slices, figures meaningless

Not a `bench_*.py`: `make bench` runs on the CPU machine, where these batch sizes are hours.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common import HERE, RESULTS, machine, run_job, run_script

NAME = "gpu"
PRECISIONS = {"fp32": "32", "auto": "auto"}  # row label -> trainer.precision (auto: bf16 on Ampere or newer)


@dataclass(frozen=True)
class Sizes:
    mnrl_batch: int = 128
    imdb_batch: int = 64
    mnrl_train: int | None = None      # None: all 29,481 NLI pairs
    imdb_train: int | None = 20000     # of 40,000: two workloads x 13 runs fit ~8 min of an H100
    eval_samples: int | None = 2000
    nlpexp_model: tuple[str, ...] = ()  # e.g. ("model=tiny_bert",) for --tiny
    nlpexp_precisions: tuple[str, ...] = ("fp32", "auto")
    plain_precisions: tuple[str, ...] = ("fp32", "bf16")  # the last one also runs transformers' group_by_length


FULL = Sizes()
TINY = Sizes(mnrl_batch=8, imdb_batch=8, mnrl_train=32, imdb_train=32, eval_samples=16,
             nlpexp_model=("model=tiny_bert",), nlpexp_precisions=("fp32",),
             plain_precisions=("fp32",))  # auto is fp32 on a CPU, and a CPU may lack bf16


def limits(train: int | None, evaluation: int | None) -> tuple[str, ...]:
    return ((f"data.max_train_samples={train}",) if train else ()) + \
        ((f"data.max_eval_samples={evaluation}",) if evaluation else ())


def nlpexp_runs(workload: str, sizes: Sizes) -> list[tuple[str, tuple[str, ...]]]:
    """(row label, run.py overrides) for every precision x grouping of one workload."""
    if workload == "mnrl":
        base = ("experiment=embedding_mnrl_reference", f"trainer.batch_size={sizes.mnrl_batch}",
                *limits(sizes.mnrl_train, sizes.eval_samples))
    else:
        base = ("experiment=imdb", "model=minilm", "trainer.max_epochs=1", "trainer.early_stopping_patience=null",
                f"trainer.batch_size={sizes.imdb_batch}", *limits(sizes.imdb_train, sizes.eval_samples))
    base += ("trainer.evaluate_start=false", *sizes.nlpexp_model)
    return [(f"nlpexp {label}{' grouped' if grouped else ''}",
             (*base, f"trainer.precision={precision}", f"trainer.group_by_length={str(grouped).lower()}"))
            for label in sizes.nlpexp_precisions for precision in [PRECISIONS[label]] for grouped in (False, True)]


def plain_runs(workload: str, sizes: Sizes) -> list[tuple[str, Path, tuple[str, ...]]]:
    if workload == "mnrl":
        script = HERE / "plain_st_reference.py"
        base = ("all_pairs", "--batch-size", str(sizes.mnrl_batch),
                *_flags(sizes.mnrl_train, sizes.eval_samples))
        return [(f"plain sentence-transformers {p}", script, (*base, "--precision", p))
                for p in sizes.plain_precisions]
    script = HERE / "plain_hf_classification.py"
    base = ("--batch-size", str(sizes.imdb_batch), *_flags(sizes.imdb_train, sizes.eval_samples))
    last = sizes.plain_precisions[-1]
    return [(f"plain transformers {p}", script, (*base, "--precision", p)) for p in sizes.plain_precisions] + \
        [(f"plain transformers {last} grouped", script, (*base, "--precision", last, "--group-by-length"))]


def _flags(train: int | None, evaluation: int | None) -> tuple[str, ...]:
    return ((f"--max-train-samples={train}",) if train else ()) + \
        ((f"--max-eval-samples={evaluation}",) if evaluation else ())


METRIC = {"mnrl": ("val/spearman_cosine", "spearman_cosine"), "imdb": ("test/accuracy", "accuracy")}


def measure(workload: str, sizes: Sizes) -> list[dict]:
    """Every run of one workload: nlpexp's rows, then the plain library's, each with samples/s and the metric."""
    ours, theirs = METRIC[workload]
    rows = []
    for label, overrides in nlpexp_runs(workload, sizes):
        result = run_job(*overrides)
        rows.append({"workload": workload, "run": label, "samples_per_s": result.get("train/samples_per_second"),
                     "metric": result.get(ours), "wall_s": result["wall_s"], "command": " ".join(overrides)})
    for label, script, args in plain_runs(workload, sizes):
        stdout, wall = run_script(script, *args)
        figures = json.loads(stdout.strip().splitlines()[-1])
        rows.append({"workload": workload, "run": label, "samples_per_s": figures["train_samples_per_second"],
                     "metric": figures[theirs], "wall_s": round(wall, 1),
                     "command": f"{script.name} {' '.join(args)}"})
    return rows


def table(figures: dict) -> str:
    lines = [f"### GPU: nlpexp vs the plain libraries ({figures['machine'].get('gpu') or 'no GPU'})", "",
             "| workload | run | train samples/s | metric | wall s |", "|---|---|---|---|---|"]
    for row in figures["rows"]:
        speed = "–" if row["samples_per_s"] is None else f"{row['samples_per_s']:.1f}"
        metric = "–" if row["metric"] is None else f"{row['metric']:.4f}"
        lines.append(f"| {row['workload']} | {row['run']} | {speed} | {metric} | {row['wall_s']:.0f} |")
    lines += ["", "mnrl: STSb validation spearman_cosine; imdb: test accuracy. "
              + ("TINY PLUMBING CHECK, not a result." if figures["tiny"] else "")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(METRIC), action="append", help="workloads (default: both)")
    parser.add_argument("--tiny", action="store_true", help="tiny model and slices: a plumbing check on the CPU")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for gpu.json and gpu.md")
    args = parser.parse_args(argv)
    import torch

    if not args.tiny and not torch.cuda.is_available():
        print("error: no CUDA GPU here; benchmarks/gpu.py measures GPU batch sizes (--tiny: a CPU plumbing check)",
              file=sys.stderr)
        return 2
    sizes = TINY if args.tiny else FULL
    started = time.perf_counter()
    rows = [row for workload in (args.only or sorted(METRIC)) for row in measure(workload, sizes)]
    figures = {"tiny": args.tiny, "machine": machine(), "sizes": sizes.__dict__, "rows": rows,
               "total_wall_s": round(time.perf_counter() - started, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{NAME}.json").write_text(json.dumps(figures, indent=2) + "\n")
    (args.out / f"{NAME}.md").write_text(table(figures) + "\n")
    print(table(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
