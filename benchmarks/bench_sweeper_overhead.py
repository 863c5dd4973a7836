"""The study sweeper's own overhead: a 6-trial sweep of a trivial function, official sweeper against `study`.

The app is tests/sweeper_app (x**2 + y**2 over two intervals), so the wall time is the sweeper's and Hydra's:
process start, imports, sampling, the launcher composing each job, and for `study` its sqlite storage, heartbeats
and summary tables. Each command runs in a fresh process, the sweepers alternating, `--repeat` times; the
figure is the median wall time. Target: `study` within 2x the official sweeper.

    python benchmarks/bench_sweeper_overhead.py             # tpe and gp, 5 repeats
    python benchmarks/bench_sweeper_overhead.py --quick     # tpe, 1 repeat: checks the script
"""

from __future__ import annotations

import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from common import ROOT, StealMeter, bench_parser, publish, run_script

N_TRIALS = 6
# The official sweeper keeps its study in memory unless told a storage; "official+sqlite" gives it the storage the
# study sweeper always has, which shows what is the sweeper's own overhead and what is the storage's.
SWEEPERS = {"official": ["hydra/sweeper=optuna"], "official+sqlite": ["hydra/sweeper=optuna", "sqlite"],
            "study": ["hydra/sweeper=study"]}


def sweep_seconds(sweeper: str, sampler: str, sweep_dir: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one sweep command; CPU (user + system) is what a busy machine does not inflate."""
    choice, *storage = SWEEPERS[sweeper]
    storage = [f"hydra.sweeper.storage=sqlite:///{sweep_dir}.db"] if storage else []
    command = ["-m", choice, *storage,
               f"hydra/sweeper/sampler={sampler}", f"hydra.sweeper.n_trials={N_TRIALS}", "hydra.sweeper.n_jobs=1",
               f"hydra.sweep.dir={sweep_dir}"]
    started, cpu_before = time.perf_counter(), _children_cpu()
    run_script(ROOT / "tests" / "sweeper_app" / "app.py", *command, env={"OMP_NUM_THREADS": "1"})
    return time.perf_counter() - started, _children_cpu() - cpu_before


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    args = bench_parser(__doc__)
    args.add_argument("--repeat", type=int, default=5)
    options = args.parse_args(argv)
    samplers, repeat = (["tpe"], 1) if options.quick else (["tpe", "gp"], options.repeat)
    figures: dict = {"n_trials": N_TRIALS, "repeat": repeat, "quick": options.quick, "samplers": {}}
    steal = StealMeter()
    with tempfile.TemporaryDirectory(prefix="nlpexp-bench-sweeper-") as temp:
        for sampler in samplers:
            walls: dict[str, list[float]] = {name: [] for name in SWEEPERS}
            cpus: dict[str, list[float]] = {name: [] for name in SWEEPERS}
            for i in range(repeat):
                for name in SWEEPERS:
                    wall, cpu = sweep_seconds(name, sampler, Path(temp) / f"{sampler}-{name}-{i}")
                    walls[name].append(round(wall, 2))
                    cpus[name].append(round(cpu, 2))
            medians = {name: statistics.median(values) for name, values in walls.items()}
            cpu_medians = {name: statistics.median(values) for name, values in cpus.items()}
            figures["samplers"][sampler] = {
                "wall_s": walls, "cpu_s": cpus, "median_s": medians, "median_cpu_s": cpu_medians,
                "ratio": round(medians["study"] / medians["official"], 2),
                "cpu_ratio": round(cpu_medians["study"] / cpu_medians["official"], 2)}
    figures["steal_pct"] = steal.percent()
    rows = [f"| {sampler} {label} | {' | '.join(f'{f[kind][name]:.2f}' for name in SWEEPERS)} | {f[ratio]:.2f}x |"
            for sampler, f in figures["samplers"].items()
            for label, kind, ratio in (("wall", "median_s", "ratio"), ("CPU", "median_cpu_s", "cpu_ratio"))]
    table = "\n".join([
        f"{N_TRIALS}-trial sweep of tests/sweeper_app (trivial objective), median wall time of {repeat} fresh "
        f"processes each, and their CPU time (CPU steal {figures['steal_pct']} %; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end):", "",
        "| sampler, seconds | official | official + sqlite | study | study / official |",
        "|---|---|---|---|---|", *rows])
    publish("sweeper_overhead", figures, table, options.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
