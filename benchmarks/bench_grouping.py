"""Length grouping per task (issue 30, item 1): each task's default recipe, grouped and not, side by side.

For every task, the same `python run.py <recipe>` twice in fresh processes, `trainer.group_by_length=false` and
`=true`, one right after the other (which goes first alternates from task to task, so that a drift of the machine
does not always favour one arm). Per run: the task's metric, wall time, the trainer's training samples/s and the
process's peak resident memory (its rusage, children included). A task keeps grouping on by default only if its
metric grouped is within ±0.003 of ungrouped (or better); the figures go to benchmarks/results/grouping.{json,md}
and to docs/performance.md. Sizes are cut to fit a 2-core CPU (each recipe's settings otherwise as shipped); the
sbert_nli row is `make run` itself.

    python benchmarks/bench_grouping.py                    # every task, about 40 min on a quiet 2-core CPU
    python benchmarks/bench_grouping.py sbert_nli tsdae    # chosen tasks
    python benchmarks/bench_grouping.py --quick            # tiny models and slices: checks the script
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RUN_PY, StealMeter, bench_parser, machine, publish

QUALITY_GAP = 0.003
# task -> (its metric, the recipe as overrides, the --quick slice)
RECIPES = {
    "sbert_nli": ("val/spearman_cosine", (), ("model=tiny_bert", "debug=smoke")),
    "embedding": ("val/spearman_cosine", ("experiment=embedding_mnrl_triplets", "data.max_train_samples=2000"),
                  ("model=tiny_bert", "debug=smoke")),
    "augsbert": ("val/spearman_cosine", ("experiment=augsbert_sts", "data.max_train_samples=1500"),
                 ("model=tiny_bert", "debug=smoke", "task.gold_size=16")),
    "tsdae": ("val/spearman_cosine", ("experiment=tsdae_reference", "data.max_train_samples=1500"),
              ("model=tiny_bert", "debug=smoke")),
    "classification": ("val/accuracy", ("experiment=imdb", "model=minilm", "trainer.max_epochs=1",
                                        "trainer.early_stopping_patience=null", "data.max_train_samples=1000",
                                        "data.max_eval_samples=500"),
                       ("model=tiny_bert", "debug=smoke")),
    "summarization": ("val/rouge_sum", ("experiment=summarization_dialogsum", "trainer.max_steps=30",
                                        "trainer.eval_every_steps=30", "data.max_train_samples=480",
                                        "data.max_eval_samples=48"),
                      ("model=tiny_bert2bert", "debug=smoke")),
}


def run_once(overrides: list[str], run_dir: Path) -> dict:
    """One fresh `python run.py` (offline, logger=none); its metrics.json with wall time and peak RSS."""
    started = time.perf_counter()
    steal = StealMeter()
    process = subprocess.Popen([sys.executable, str(RUN_PY), *overrides, f"hydra.run.dir={run_dir}", "logger=none"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage: its peak memory, not the bench's
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"run.py {' '.join(overrides)} failed:\n{stderr[-3000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {**metrics, "wall_s": round(wall, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024), "steal_pct":
            steal.percent()}


def measure(task: str, order: int, quick: bool, temp: Path) -> dict:
    metric, recipe, slice_ = RECIPES[task]
    overrides = [*recipe, *(slice_ if quick else ())]  # each recipe's preset names its task
    arms = ("plain", "grouped") if order % 2 == 0 else ("grouped", "plain")
    runs = {arm: run_once([*overrides, f"trainer.group_by_length={arm == 'grouped'}"], temp / task / arm)
            for arm in arms}
    plain, grouped = runs["plain"], runs["grouped"]
    gap = grouped[metric] - plain[metric]
    return {"task": task, "metric": metric, "overrides": overrides, "first": arms[0], "plain": plain,
            "grouped": grouped, "quality_gap": round(gap, 4), "quality_holds": gap >= -QUALITY_GAP,
            "speedup": round(plain["wall_s"] / grouped["wall_s"], 3),
            "memory_change_pct": round(100 * (grouped["peak_rss_mb"] / plain["peak_rss_mb"] - 1), 1)}


def _rate(run: dict) -> str:
    rate = run.get("train/samples_per_second")
    return f"{rate:.1f}" if rate else "–"


def table(figures: dict) -> str:
    where = figures["machine"]
    lines = ["### Length grouping per task: each default recipe grouped and not (issue 30)", "",
             "| task | recipe | metric: plain / grouped (gap) | within ±0.003 or better | wall plain / grouped "
             "| train samples/s plain / grouped | peak RSS plain / grouped |", "|---|---|---|---|---|---|---|"]
    for row in figures["rows"]:
        plain, grouped, metric = row["plain"], row["grouped"], row["metric"]
        recipe = " ".join(row["overrides"]) or "`make run` (the defaults)"
        lines.append(f"| {row['task']} | {recipe} | {metric} {plain[metric]:.4f} / {grouped[metric]:.4f} "
                     f"({row['quality_gap']:+.4f}) | {'yes' if row['quality_holds'] else 'no'} | "
                     f"{plain['wall_s']:.0f} s / {grouped['wall_s']:.0f} s ({row['speedup']:.2f}x) | "
                     f"{_rate(plain)} / {_rate(grouped)} | {plain['peak_rss_mb']} / {grouped['peak_rss_mb']} MB "
                     f"({row['memory_change_pct']:+.1f} %) |")
    lines += ["", f"Fresh `python run.py` processes, `logger=none`, torch's default threads; wall: the whole process. "
              f"Machine: {where['cpu']}, {where['cpu_count']} cores, GPU {where['gpu'] or 'none'}, {where['date']}, "
              f"nothing else running."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("tasks", nargs="*", help=f"tasks (default: all): {', '.join(RECIPES)}")
    parser.add_argument("--results-dir", type=Path, default=None, help="where grouping.{json,md} go")
    args = parser.parse_args(argv)
    if unknown := sorted(set(args.tasks) - set(RECIPES)):
        parser.error(f"unknown tasks {unknown}; tasks: {', '.join(RECIPES)}")
    tasks = [task for task in RECIPES if not args.tasks or task in args.tasks]
    with tempfile.TemporaryDirectory(prefix="nlpexp-bench-grouping-") as temp:
        rows = []
        for order, task in enumerate(tasks):
            rows.append(measure(task, order, args.quick, Path(temp)))
            print(json.dumps({k: rows[-1][k] for k in ("task", "quality_gap", "speedup", "memory_change_pct")}),
                  flush=True)
    figures = {"quick": args.quick, "machine": machine(), "rows": rows}
    publish("grouping", figures, table(figures), args.quick or bool(args.tasks), args.results_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
