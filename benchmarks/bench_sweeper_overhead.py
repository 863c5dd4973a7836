"""The study sweeper's own overhead: a 6-trial sweep of a trivial function, official sweeper against `study`.

The app is tests/sweeper_app (x**2 + y**2 over two intervals), so the wall time is the sweeper's and Hydra's:
process start, imports, sampling, the launcher composing each job, and for `study` its sqlite storage, heartbeats
and summary tables. Each command runs in a fresh process, the sweepers alternating, `--repeat` times; the
figure is the median wall time. Target: `study` within 2x the official sweeper.

    python benchmarks/bench_sweeper_overhead.py             # tpe and gp, 3 repeats
    python benchmarks/bench_sweeper_overhead.py --quick     # tpe, 1 repeat: checks the script
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, StealMeter, bench_parser, update_docs, write_results

N_TRIALS = 6
SWEEPERS = {"official": "hydra/sweeper=optuna", "study": "hydra/sweeper=study"}


def sweep_seconds(sweeper: str, sampler: str, sweep_dir: Path) -> float:
    command = [sys.executable, str(ROOT / "tests" / "sweeper_app" / "app.py"), "-m", SWEEPERS[sweeper],
               f"hydra/sweeper/sampler={sampler}", f"hydra.sweeper.n_trials={N_TRIALS}", "hydra.sweeper.n_jobs=1",
               f"hydra.sweep.dir={sweep_dir}"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return wall


def main() -> None:
    args = bench_parser(__doc__)
    args.add_argument("--repeat", type=int, default=3)
    options = args.parse_args()
    samplers, repeat = (["tpe"], 1) if options.quick else (["tpe", "gp"], options.repeat)
    figures: dict = {"n_trials": N_TRIALS, "repeat": repeat, "quick": options.quick, "samplers": {}}
    steal = StealMeter()
    with tempfile.TemporaryDirectory(prefix="nlpexp-bench-sweeper-") as temp:
        for sampler in samplers:
            walls: dict[str, list[float]] = {name: [] for name in SWEEPERS}
            for i in range(repeat):
                for name in SWEEPERS:
                    walls[name].append(round(sweep_seconds(name, sampler, Path(temp) / f"{sampler}-{name}-{i}"), 2))
            medians = {name: statistics.median(values) for name, values in walls.items()}
            figures["samplers"][sampler] = {"wall_s": walls, "median_s": medians,
                                            "ratio": round(medians["study"] / medians["official"], 2)}
    figures["steal_pct"] = steal.percent()
    rows = [f"| {sampler} | {f['median_s']['official']:.2f} | {f['median_s']['study']:.2f} | {f['ratio']:.2f}x |"
            for sampler, f in figures["samplers"].items()]
    table = "\n".join([
        f"{N_TRIALS}-trial sweep of tests/sweeper_app (trivial objective), median wall time of {repeat} fresh "
        f"processes each (CPU steal {figures['steal_pct']} %):", "",
        "| sampler | official (s) | study (s) | study / official |", "|---|---|---|---|", *rows])
    write_results("sweeper_overhead", figures, table)
    if not options.quick:
        update_docs("sweeper_overhead", table)
    print(table)


if __name__ == "__main__":
    main()
