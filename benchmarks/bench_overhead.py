"""Framework overhead: `run.py` against a plain sentence-transformers script doing the same training.

Alternates A B A B (5 times; 1 with --quick), each in a fresh process. Throughput is taken between the first and
last logged training step (TensorBoard event wall times), so start-up and the final evaluation do not
count; time to first step is from process start to the first logged step (issue 20: at most plain + 1.0 s).
Also times `python run.py --cfg job` (compose only). Writes results/overhead.json (`first_step_gap_s_median`:
the gap) and overhead.md, and the docs table.

    python benchmarks/bench_overhead.py           # 5 A/B repeats of 60 steps (about 15 min on the 2-core CPU)
    python benchmarks/bench_overhead.py --quick   # 1 repeat of 12 steps: checks the script, printed only
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from common import ROOT, RUN_PY, StealMeter, bench_parser, machine, run_script, update_docs, write_results

FIRST_STEP_GAP_TARGET_S = 1.0
BATCH = 16
DATA_DIR = Path(os.environ.get("NLPEXP_DATA_DIR", ROOT.parent / "shared" / "data")).resolve()


def step_times(log_dir: Path, tag: str) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.wall_time for e in acc.Scalars(tag)]


def timed(script: Path, args: list[str], steps: int, log_dir: Path, tag: str) -> dict:
    started, steal = time.time(), StealMeter()
    run_script(script, *args, env={"NLPEXP_DATA_DIR": str(DATA_DIR)})
    times = step_times(log_dir, tag)
    assert len(times) == steps, f"{len(times)} logged steps, expected {steps}"
    return {"samples_per_s": (len(times) - 1) * BATCH / (times[-1] - times[0]), "first_step_s": times[0] - started,
            "steal_pct": steal.percent()}


def ours(out: Path, steps: int) -> dict:
    args = ["trainer.group_by_length=false", f"trainer.max_steps={steps}", f"trainer.batch_size={BATCH}",
            "trainer.logging_steps=1",
            f"data.max_train_samples={steps * BATCH}", "data.max_eval_samples=64",
            "logger.tensorboard.histograms=false", f"hydra.run.dir={out}", f"paths.ledger_file={out}/ledger.jsonl",
            # what the plain script does: one learning rate, no scoring of the starting model before training
            "optimizer.head_lr=null", "trainer.evaluate_start=false"]
    return timed(RUN_PY, args, steps, out / "tensorboard", "Loss/Train_Batch")


def plain(out: Path, steps: int) -> dict:
    args = ["--data-dir", str(DATA_DIR), "--out", str(out), "--steps", str(steps), "--batch-size", str(BATCH)]
    return timed(Path(__file__).with_name("plain_sbert_nli.py"), args, steps, out / "tensorboard", "train/loss")


def compose_only() -> float:
    return statistics.median(run_script(RUN_PY, "--cfg", "job")[1] for _ in range(5))


def main(argv: list[str] | None = None) -> int:
    quick = bench_parser(__doc__).parse_args(argv).quick
    steps, repeats = (12, 1) if quick else (60, 5)
    pairs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            a, b = ours(Path(tmp) / f"ours{i}", steps), plain(Path(tmp) / f"plain{i}", steps)
            pairs.append((a, b))
            print(f"repeat {i}: run.py {a}, plain {b}", flush=True)
    ratio = statistics.median(a["samples_per_s"] / b["samples_per_s"] for a, b in pairs)
    first_step_gap = statistics.median(a["first_step_s"] - b["first_step_s"] for a, b in pairs)
    figures = {
        "setup": {"model": "bundled all-MiniLM-L6-v2", "task": "sbert_nli (SoftmaxLoss)", "steps": steps,
                  "batch_size": BATCH, "repeats": repeats, "quick": quick, "machine": machine()},
        "runs": [{"run_py": a, "plain": b} for a, b in pairs],
        "throughput_ratio_median": round(ratio, 4),
        "first_step_gap_s_median": round(first_step_gap, 2),
        "first_step_gap_target_s": FIRST_STEP_GAP_TARGET_S,
        "compose_only_s_median": round(compose_only(), 3),
    }
    gap = figures["first_step_gap_s_median"]
    table = f"""### Framework overhead (sbert_nli, MiniLM, batch {BATCH}, {steps} steps, {repeats} A/B repeats)

| figure | measured | target |
|---|---|---|
| training samples/s, run.py / plain (median) | {figures['throughput_ratio_median']:.3f} | >= 0.97 |
| time to first step, run.py minus plain (median) | {gap:+.2f} s | <= +{FIRST_STEP_GAP_TARGET_S} s |
| `python run.py --cfg job` (compose only, median of 5) | {figures['compose_only_s_median']:.2f} s | <= 1.0 s |
"""
    if not quick:  # a quick run checks the script; its figures would overwrite the results
        write_results("overhead", figures, table)
        update_docs("overhead", table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
