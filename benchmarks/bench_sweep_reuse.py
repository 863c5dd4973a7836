"""What does a sweep reuse between its trials? An 8-trial classification sweep against 8 x one run's time.

The trials of a sweep (basic launcher) run in one process: Python, torch and transformers are imported once,
the data files read once, and the tokenised splits come from the on-disk cache (paths.cache_dir) from the
second trial on. The single run is the same job (the preset with its default values) in a fresh process with
an empty cache ("cold", what 8 separate runs would each pay without the cache) and again with the cache it
filled ("warm"). Every knob that sets a trial's cost (batch size, steps, data) is fixed; the sweep samples
only the learning rate, weight decay, warmup and dropout. Studies, cache, registry and ledger go to a temp dir.

    python benchmarks/bench_sweep_reuse.py            # 8 trials, MiniLM on 4,000 IMDB reviews, 20 steps
    python benchmarks/bench_sweep_reuse.py --quick    # 3 trials, 1,000 reviews, 10 steps: checks the script
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from common import RUN_PY, bench_parser, publish, run_job, run_script

PRESET = "classification"
REUSED = "reused cache"  # what a run logs for each split it read from the cache (nlpexp.data.cache)


def job_overrides(quick: bool) -> list[str]:
    """The job every trial and the single runs share; none of the sampled parameters changes its cost."""
    steps, train, evaluated = (10, 1000, 100) if quick else (20, 4000, 200)
    return [f"hparams_search={PRESET}", "model=minilm", "trainer.batch_size=16",
            f"trainer.max_steps={steps}", f"trainer.eval_every_steps={steps}", "trainer.save_total_limit=1",
            f"data.max_train_samples={train}", f"data.max_eval_samples={evaluated}"]


def environment(temp: Path, cache: str) -> dict:
    # The sweep and the single runs have a cache dir each, so that both start cold; the registry stays out of
    # the project.
    return {"HF_HUB_OFFLINE": "1", "NLPEXP_CACHE_DIR": str(temp / cache), "NLPEXP_REGISTRY_DIR": str(temp / "registry")}


def run_sweep(n_trials: int, quick: bool, temp: Path) -> dict:
    study = "bench-sweep-reuse"
    command = ["-m", *job_overrides(quick), "logger=none",
               f"hydra.sweeper.n_trials={n_trials}", f"hydra.sweeper.study_name={study}",
               f"hydra.sweeper.studies_dir={temp / 'studies'}", "hydra.sweeper.promote_best=false",
               f"paths.ledger_file={temp / 'ledger.jsonl'}"]
    _, wall = run_script(RUN_PY, *command, env=environment(temp, "sweep-cache"))
    trials = [trial_figures(temp / "studies" / study / str(n)) for n in range(n_trials)]
    return {"wall_s": round(wall, 1), "trials": trials}


def trial_figures(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    log = (run_dir / "run.log").read_text(encoding="utf-8")
    return {"run_s": metrics["time/total_s"], "reused_splits": log.count(REUSED)}


def run_single(quick: bool, temp: Path, name: str) -> dict:
    """One run of the job in a fresh process, with the cache dir of the single runs."""
    result = run_job(*job_overrides(quick), f"paths.ledger_file={temp / 'ledger.jsonl'}", run_dir=temp / name,
                     env=environment(temp, "single-cache"))
    log = (temp / name / "run.log").read_text(encoding="utf-8")
    return {"wall_s": result["wall_s"], "run_s": result["time/total_s"], "reused_splits": log.count(REUSED)}


def table(figures: dict) -> str:
    sweep, cold, warm, n = figures["sweep"], figures["single_cold"], figures["single_warm"], figures["n_trials"]
    later = sweep["trials"][1:]
    return "\n".join([
        f"### Sweep reuse ({n} trials, `hparams_search={PRESET}` on MiniLM{', quick' if figures['quick'] else ''})",
        "",
        "| what | wall time | in-run time per run | splits read from the cache |",
        "|---|---|---|---|",
        f"| sweep, {n} trials in one process | {sweep['wall_s']:.0f} s | first {sweep['trials'][0]['run_s']:.1f} s, "
        f"then median {statistics.median(t['run_s'] for t in later):.1f} s | "
        f"{sum(t['reused_splits'] for t in sweep['trials'])} (trials 2-{n}: "
        f"{sum(t['reused_splits'] for t in later)}) |",
        f"| one run, fresh process, empty cache | {cold['wall_s']:.0f} s | {cold['run_s']:.1f} s | "
        f"{cold['reused_splits']} |",
        f"| one run, fresh process, warm cache | {warm['wall_s']:.0f} s | {warm['run_s']:.1f} s | "
        f"{warm['reused_splits']} |",
        "",
        f"Sweep / ({n} x one cold run): {figures['ratio_vs_cold']:.2f}; "
        f"sweep / ({n} x one warm run): {figures['ratio_vs_warm']:.2f}.",
    ])


def main(argv: list[str] | None = None) -> int:
    args = bench_parser(__doc__).parse_args(argv)
    n_trials = 3 if args.quick else 8
    with tempfile.TemporaryDirectory(prefix="nlpexp-bench-reuse-") as temp:
        temp = Path(temp)
        cold = run_single(args.quick, temp, "single-cold")
        warm = run_single(args.quick, temp, "single-warm")
        sweep = run_sweep(n_trials, args.quick, temp)
    figures = {"quick": args.quick, "n_trials": n_trials, "overrides": job_overrides(args.quick),
               "sweep": sweep, "single_cold": cold, "single_warm": warm,
               "ratio_vs_cold": round(sweep["wall_s"] / (n_trials * cold["wall_s"]), 3),
               "ratio_vs_warm": round(sweep["wall_s"] / (n_trials * warm["wall_s"]), 3)}
    markdown = table(figures)
    publish("sweep_reuse", figures, markdown, args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
