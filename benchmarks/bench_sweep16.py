"""A 16-trial search two ways: as nlpexp sweeps it, and as 16 independent plain runs of the same trials.

(a) `run.py -m hparams_search=sbert_nli hydra.sweeper.n_trials=16` (TPE), with the preset's pruner (--pruner;
    default `halving`: successive halving, its first rung at the first evaluation), model-only checkpoints and
    length-grouped batches (the split cache is given a cold dir, but sbert_nli's collator tokenises per batch: it
    has nothing to cache). --jobs N (default: one per core) runs N trials at once (`hydra/launcher=parallel`: joblib
    worker processes, each kept for the next trial, each given cores/N torch threads); --jobs 1 runs them one by
    one in the sweep process.
(b) the same 16 parameter sets, read back from (a)'s trials.csv, each a fresh `python run.py <overrides>`, one
    after another, each with torch's own thread count (every core, as a plain run has): no pruning (a single run
    has none), no grouping, no cache (paths.cache_dir=null), resumable checkpoints (the preset's
    trainer.save_only_model is left out): nothing shared.
Everything else (model, data, steps, evaluation) is the same. Both arms use the whole machine, each its own way:
one trial on every core, or one trial per core (on 2 cores, 2 torch threads make a MiniLM step only about 1.4x
faster than 1). --threads 1 pins both arms to one thread, as the rows before session 14 were measured.
The figures: wall time of each arm and the best val/spearman_cosine of each. Target (issue 30): (a) <= 0.35x
(b)'s wall time, best within 0.003 (or better).
Studies, cache, run dirs, registry and ledger go to a temp dir. Needs a quiet machine: its row is a timing.

    python benchmarks/bench_sweep16.py           # MiniLM, 16 trials x 60 steps on 2,000 NLI pairs
    python benchmarks/bench_sweep16.py --tiny    # tiny_bert, 4 trials x 4 steps on 64 pairs: checks the script
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

from common import ROOT, RUN_PY, StealMeter, bench_parser, machine, publish, run_job, run_script
from omegaconf import OmegaConf

PRESET = "sbert_nli"
METRIC = "val/spearman_cosine"
TARGET_RATIO, TARGET_GAP = 0.35, 0.003


def job_overrides(tiny: bool) -> list[str]:
    """What both arms share: the preset and the size of each trial."""
    # Full size: 60 steps on 2,000 NLI pairs, scored on 300 STSb / SNLI pairs every 20 steps, so that both arms
    # (16 trials each) fit a quiet 2-core machine in about 45 min; 150 steps on 4,000 pairs took 2-3 h.
    model, steps, every, train, evaluated = ("tiny_bert", 4, 2, 64, 32) if tiny else ("minilm", 60, 20, 2000, 300)
    return [f"hparams_search={PRESET}", f"model={model}", f"trainer.max_steps={steps}",
            f"trainer.eval_every_steps={every}", "trainer.save_total_limit=1", "trainer.evaluate_start=false",
            f"data.max_train_samples={train}", f"data.max_eval_samples={evaluated}"]


def preset_settings() -> list[str]:
    """The preset's own settings outside the sweeper (e.g. trainer.eval_every_steps), as overrides: a plain run
    cannot name a sweep preset (run.py refuses it without -m), so it gets them one by one."""
    preset = OmegaConf.load(ROOT / "conf" / "hparams_search" / f"{PRESET}.yaml")
    flat = OmegaConf.to_container(preset)

    def walk(node: dict, prefix: str) -> list[str]:
        return [line for key, value in node.items() if key not in ("defaults", "hydra") for line in
                (walk(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}={_value(value)}"])]

    return walk(flat, "")


def _value(value: object) -> str:
    return "null" if value is None else str(value)


def environment(temp: Path, threads: int | None) -> dict:
    """Offline, a registry of its own; `threads`: OMP_NUM_THREADS of every process (None: torch's default, every
    core; the sweep's joblib workers get cores/jobs each)."""
    pinned = {"OMP_NUM_THREADS": str(threads)} if threads else {}
    return {"HF_HUB_OFFLINE": "1", "NLPEXP_REGISTRY_DIR": str(temp / "registry"), **pinned}


def pruner_overrides(pruner: str, tiny: bool, reduction_factor: int | None = None) -> list[str]:
    """`halving` is the preset's own: successive halving with its first rung at the first evaluation (conf/hydra/
    sweeper/pruner/halving.yaml), reduction factor 4. `successive_halving` is the same with the plugin's factor 3;
    the median pruner waits for a few finished trials."""
    every = next(o.split("=")[1] for o in job_overrides(tiny) if o.startswith("trainer.eval_every_steps="))
    factor = [f"hydra.sweeper.pruner.reduction_factor={reduction_factor}"] if reduction_factor else []
    if pruner == "halving":
        return factor
    settings = {"median": [f"hydra.sweeper.pruner.n_startup_trials={2 if tiny else 4}"],
                "successive_halving": [f"hydra.sweeper.pruner.min_resource={every}"]}
    return [f"hydra/sweeper/pruner={pruner}", *settings.get(pruner, []), *factor]


def run_sweep(n_trials: int, tiny: bool, temp: Path, pruner: str, reduction_factor: int | None = None,
              jobs: int = 1, threads: int | None = None) -> dict:
    study = "bench-sweep16"
    steal = StealMeter()
    parallel = ["hydra/launcher=parallel", f"hydra.launcher.n_jobs={jobs}"] if jobs > 1 else []
    command = ["-m", *job_overrides(tiny), "logger=none", f"hydra.sweeper.n_trials={n_trials}", *parallel,
               "hydra/sweeper/sampler=tpe", *pruner_overrides(pruner, tiny, reduction_factor),
               "trainer.group_by_length=true",
               f"hydra.sweeper.study_name={study}", f"hydra.sweeper.studies_dir={temp / 'studies'}",
               f"paths.cache_dir={temp / 'cache'}", f"paths.ledger_file={temp / 'ledger.jsonl'}"]
    _, wall = run_script(RUN_PY, *command, env=environment(temp, threads))
    trials = read_trials(temp / "studies" / study / "trials.csv")
    done = [t["value"] for t in trials if t["state"] == "COMPLETE"]
    return {"wall_s": round(wall, 1), "steal_pct": steal.percent(), "best_value": max(done) if done else None,
            "pruner": pruner, "reduction_factor": reduction_factor, "jobs": jobs, "threads": threads,
            "pruned": sum(t["state"] == "PRUNED" for t in trials), "trials": trials}


def read_trials(path: Path) -> list[dict]:
    """Each trial's number, state, value and sampled parameters (the columns between `host` and `run_dir`)."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    header = list(rows[0])
    names = header[header.index("host") + 1:header.index("run_dir")]
    return [{"number": int(r["number"]), "state": r["state"], "value": float(r["value"]) if r["value"] else None,
             "params": {name: r[name] for name in names}} for r in rows]


def plain_overrides(params: dict, tiny: bool) -> list[str]:
    """A plain run of one trial: the preset's settings, the shared job and the trial's parameters."""
    shared = [o for o in job_overrides(tiny) if not o.startswith("hparams_search=")]
    # trainer.save_only_model is the preset's sweep economy, as grouping and pruning are: a plain run keeps the
    # trainer's resumable checkpoints
    keys = {o.split("=", 1)[0] for o in shared} | {"trainer.save_only_model"}
    preset = [o for o in preset_settings() if o.split("=", 1)[0] not in keys]
    return [*preset, *shared, *(f"{name}={value}" for name, value in params.items()),
            "trainer.group_by_length=false", "paths.cache_dir=null"]


def run_plain(trial: dict, tiny: bool, temp: Path, threads: int | None = None) -> dict:
    """One trial's parameters in a fresh `python run.py` process; `params` are read back from its config."""
    run_dir = temp / "plain" / str(trial["number"])
    result = run_job(*plain_overrides(trial["params"], tiny), f"paths.ledger_file={temp / 'ledger.jsonl'}",
                     run_dir=run_dir, env=environment(temp, threads))
    config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    return {"number": trial["number"], "value": result[METRIC], "wall_s": result["wall_s"],
            "params": {name: str(OmegaConf.select(config, name)) for name in trial["params"]}}


def table(figures: dict) -> str:
    sweep, plain, where = figures["sweep"], figures["plain"], figures["machine"]
    n, size = figures["n_trials"], "tiny" if figures["tiny"] else "full size"
    return "\n".join([
        f"### One {n}-trial search two ways (`hparams_search={PRESET}`, TPE, {size})", "",
        f"| arm | wall time | trials pruned | best {METRIC} |", "|---|---|---|---|",
        f"| nlpexp sweep: {_lanes(sweep, where['cpu_count'])}, {_pruner(sweep)} pruner, grouped | "
        f"{sweep['wall_s']:.0f} s | {sweep['pruned']} | {sweep['best_value']:.4f} |",
        f"| {n} plain `run.py` processes one after another ({_threads(plain)}), same parameters, no pruning | "
        f"{plain['wall_s']:.0f} s | 0 | "
        f"{plain['best_value']:.4f} |", "",
        f"Sweep / plain wall time: {figures['wall_ratio']:.2f} (target <= {TARGET_RATIO}); best gap (plain - sweep): "
        f"{figures['best_gap']:+.4f} (target <= {TARGET_GAP}). Machine: {where['cpu']}, {where['cpu_count']} cores, "
        f"GPU {where['gpu'] or 'none'}, {where['date']}; CPU steal {sweep['steal_pct']} % / {plain['steal_pct']} %.",
    ])


def _lanes(sweep: dict, cores: int) -> str:
    jobs = sweep["jobs"]
    if jobs == 1:
        return f"one trial at a time in one process, {_threads(sweep)}"
    # joblib's loky backend gives each worker cores/jobs threads unless OMP_NUM_THREADS is set
    threads = sweep["threads"] or max(1, cores // jobs)
    return f"{jobs} trials at once (joblib workers, {threads} thread(s) each)"


def _threads(arm: dict) -> str:
    return f"{arm['threads']} thread(s) per process" if arm["threads"] else "torch's default threads"


def _pruner(sweep: dict) -> str:
    factor = sweep.get("reduction_factor")
    return sweep["pruner"].replace("_", " ") + (f" (reduction factor {factor})" if factor else "")


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--tiny", action="store_true", help="tiny_bert, a few samples, 4 trials (same as --quick)")
    parser.add_argument("--trials", type=int, default=None, help="trials per arm (default: 16, --tiny 4)")
    parser.add_argument("--results-dir", type=Path, default=None, help="where sweep16.{json,md} go")
    parser.add_argument("--pruner", choices=["halving", "successive_halving", "median", "hyperband", "none"],
                        default="halving", help="the sweep arm's pruner (default: the preset's, halving)")
    parser.add_argument("--reduction-factor", type=int, default=None,
                        help="halving, successive halving, hyperband: the best 1/N go on at a rung "
                             "(default: 4 for halving, else 3)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(),
                        help="the sweep arm's trials at once (default: one per core; 1: in the sweep process)")
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS of both arms (default: unset, torch's own: every core of a process)")
    args = parser.parse_args(argv)
    if args.jobs < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--jobs and --threads must be >= 1")
    tiny = args.tiny or args.quick
    if args.threads is None:  # the launched processes inherit this environment: a caller's pin must not leak in
        os.environ.pop("OMP_NUM_THREADS", None)
    n_trials = args.trials or (4 if tiny else 16)
    with tempfile.TemporaryDirectory(prefix="nlpexp-bench-sweep16-") as temp:
        temp = Path(temp)
        sweep = run_sweep(n_trials, tiny, temp, args.pruner, args.reduction_factor, args.jobs, args.threads)
        steal = StealMeter()
        runs = [run_plain(trial, tiny, temp, args.threads) for trial in sweep["trials"]]
    plain = {"wall_s": round(sum(r["wall_s"] for r in runs), 1), "steal_pct": steal.percent(), "threads": args.threads,
             "best_value": max(r["value"] for r in runs), "runs": runs}
    figures = {"tiny": tiny, "n_trials": n_trials, "preset": PRESET, "metric": METRIC, "machine": machine(),
               "overrides": job_overrides(tiny), "sweep": sweep, "plain": plain,
               "wall_ratio": round(sweep["wall_s"] / plain["wall_s"], 3),
               "best_gap": round(plain["best_value"] - sweep["best_value"], 4)}
    figures["meets_targets"] = figures["wall_ratio"] <= TARGET_RATIO and figures["best_gap"] <= TARGET_GAP
    publish("sweep16", figures, table(figures), tiny, args.results_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
