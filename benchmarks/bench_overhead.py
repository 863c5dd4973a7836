"""Framework overhead: `run.py` against a plain sentence-transformers script doing the same training.

Alternates A B A B (REPEATS times), each in a fresh process. Throughput is taken between the first and
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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, StealMeter, bench_parser, machine, update_docs, write_results

QUICK = bench_parser(__doc__).parse_args().quick
FIRST_STEP_GAP_TARGET_S = 1.0
STEPS, BATCH, REPEATS = (12, 16, 1) if QUICK else (60, 16, 5)
DATA_DIR = Path(os.environ.get("NLPEXP_DATA_DIR", ROOT.parent / "shared" / "data")).resolve()


def step_times(log_dir: Path, tag: str) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.wall_time for e in acc.Scalars(tag)]


def timed(command: list[str], log_dir: Path, tag: str) -> dict:
    started, steal = time.time(), StealMeter()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1",
                                                                    "NLPEXP_DATA_DIR": str(DATA_DIR)})
    times = step_times(log_dir, tag)
    assert len(times) == STEPS, f"{len(times)} logged steps, expected {STEPS}"
    return {"samples_per_s": (len(times) - 1) * BATCH / (times[-1] - times[0]), "first_step_s": times[0] - started,
            "steal_pct": steal.percent()}


def ours(out: Path) -> dict:
    command = [sys.executable, str(ROOT / "run.py"), f"trainer.max_steps={STEPS}", f"trainer.batch_size={BATCH}",
               "trainer.logging_steps=1", f"data.max_train_samples={STEPS * BATCH}", "data.max_eval_samples=64",
               "logger.tensorboard.histograms=false", f"hydra.run.dir={out}", f"paths.ledger_file={out}/ledger.jsonl",
               # what the plain script does: one learning rate, no scoring of the starting model before training
               "optimizer.head_lr=null", "trainer.evaluate_start=false"]
    return timed(command, out / "tensorboard", "Loss/Train_Batch")


def plain(out: Path) -> dict:
    command = [sys.executable, str(Path(__file__).with_name("plain_sbert_nli.py")), "--data-dir", str(DATA_DIR),
               "--out", str(out), "--steps", str(STEPS), "--batch-size", str(BATCH)]
    return timed(command, out / "tensorboard", "train/loss")


def compose_only() -> float:
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "run.py"), "--cfg", "job"], check=True, capture_output=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    pairs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(REPEATS):
            a, b = ours(Path(tmp) / f"ours{i}"), plain(Path(tmp) / f"plain{i}")
            pairs.append((a, b))
            print(f"repeat {i}: run.py {a}, plain {b}", flush=True)
    ratio = statistics.median(a["samples_per_s"] / b["samples_per_s"] for a, b in pairs)
    first_step_gap = statistics.median(a["first_step_s"] - b["first_step_s"] for a, b in pairs)
    figures = {
        "setup": {"model": "bundled all-MiniLM-L6-v2", "task": "sbert_nli (SoftmaxLoss)", "steps": STEPS,
                  "batch_size": BATCH, "repeats": REPEATS, "quick": QUICK, "machine": machine()},
        "runs": [{"run_py": a, "plain": b} for a, b in pairs],
        "throughput_ratio_median": round(ratio, 4),
        "first_step_gap_s_median": round(first_step_gap, 2),
        "first_step_gap_target_s": FIRST_STEP_GAP_TARGET_S,
        "compose_only_s_median": round(compose_only(), 3),
    }
    gap = figures["first_step_gap_s_median"]
    table = f"""### Framework overhead (sbert_nli, MiniLM, batch {BATCH}, {STEPS} steps, {REPEATS} A/B repeats)

| figure | measured | target |
|---|---|---|
| training samples/s, run.py / plain (median) | {figures['throughput_ratio_median']:.3f} | >= 0.97 |
| time to first step, run.py minus plain (median) | {gap:+.2f} s | <= +{FIRST_STEP_GAP_TARGET_S} s |
| `python run.py --cfg job` (compose only, median of 5) | {figures['compose_only_s_median']:.2f} s | <= 1.0 s |
"""
    if not QUICK:  # a quick run checks the script; its figures would overwrite the results
        write_results("overhead", figures, table)
        update_docs("overhead", table)
    print(table)


if __name__ == "__main__":
    main()
