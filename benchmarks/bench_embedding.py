"""Seed 004's table (issue #3) rerun with the presets in experiments/, on the real data at the data root.

Every row is one `python run.py experiment=<preset>` in a fresh process; the table puts our STS validation
spearman_cosine beside seed 004's figure and, for the two MNRL recipes, beside the plain sentence-transformers
figures of the issue, and checks the issue's targets. Writes benchmarks/results/embedding.{json,md} and the
docs table.

    python benchmarks/bench_embedding.py             # every row (about 1.5 h on the 2-core CPU)
    python benchmarks/bench_embedding.py mnrl_reference   # chosen rows (see ROWS)
    python benchmarks/bench_embedding.py --plain     # also time plain sentence-transformers on this machine
    python benchmarks/bench_embedding.py mnrl_reference_grouped mnrl_triplets_grouped   # length grouping against plain
                                                     # sentence-transformers timed in the same run (issue 20)
    python benchmarks/bench_embedding.py --quick     # small slices in a few minutes: a plumbing check, printed only
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

from common import HERE, RESULTS, StealMeter, bench_parser, machine, run_job, run_script, update_docs, write_results
from seeds import beats, run_seeds, spread_cell

NAME = "embedding"
UNTRAINED_MINILM = 0.8672  # seed 004's all-MiniLM-L6-v2 on STSb validation


@dataclass
class Row:
    name: str
    label: str
    overrides: tuple[str, ...]
    reference: float | None = None     # seed 004's spearman_cosine (its own model and data)
    plain: float | None = None         # plain sentence-transformers 6.2 on the mirror (issue #3)
    plain_speed: float | None = None   # its train samples/s on the 2-core CPU
    plain_recipe: str | None = None    # benchmarks/plain_st_reference.py recipe that reproduces it
    baseline: str | None = None        # the row this one must beat (issue #3: AugSBERT against gold-only)
    quick: tuple[str, ...] = field(default_factory=tuple)
    # Issue 20: (samples/s ratio at least, spearman within) against plain sentence-transformers timed in this
    # same run, right after ours (the plain run is made whether or not --plain is given).
    beats_plain: tuple[float, float] | None = None
    seeds: tuple[int, ...] = ()        # one run per seed; the row shows their mean and spread


QUICK = ("data.max_train_samples=128", "data.max_eval_samples=200")
AUG_QUICK, AUG_SEEDS = ("task.gold_size=64",), (1, 2, 3)
ROWS = [
    Row("zero_shot", "all-MiniLM-L6-v2 as published (no training)", ("experiment=embedding_zero_shot",),
        reference=0.8672),
    Row("mnrl_reference", "MNRL, every NLI pair a positive (seed 004's recipe)",
        ("experiment=embedding_mnrl_reference", "trainer.group_by_length=false"), reference=0.8491, plain=0.8437,
        plain_speed=32.4,
        plain_recipe="all_pairs"),
    Row("mnrl_triplets", "MNRL, (premise, entailment, contradiction) triplets, no duplicates (better recipe)",
        ("experiment=embedding_mnrl_triplets", "trainer.group_by_length=false"), plain=0.8726, plain_speed=26.3,
        plain_recipe="triplets"),
    # Length-grouped batches (trainer.group_by_length, issue 20): less padding, the same examples per epoch.
    Row("mnrl_reference_grouped", "MNRL, seed 004's recipe, length-grouped batches",
        ("experiment=embedding_mnrl_reference", "trainer.group_by_length=true"), plain_recipe="all_pairs",
        beats_plain=(1.25, 0.003)),
    Row("mnrl_triplets_grouped", "MNRL triplets, no duplicates, length-grouped batches",
        ("experiment=embedding_mnrl_triplets", "trainer.group_by_length=true"), plain_recipe="triplets",
        beats_plain=(1.25, 0.003)),
    Row("augsbert", "AugSBERT: cross-encoder on 10k gold, silver 0/1 labels, CosineSimilarityLoss",
        ("experiment=augsbert_reference",), reference=0.7126, baseline="augsbert_gold_only",
        quick=("task.gold_size=64",)),
    Row("augsbert_gold_only", "the same bi-encoder on the 10k gold pairs only", ("experiment=augsbert_gold_only",),
        reference=0.6824, quick=("task.gold_size=64",)),
    # CoSENT only asks that a batch's pairs rank by their scores, where CosineSimilarityLoss pulls every 0-labelled
    # NLI pair to cosine 0: a similarity-trained MiniLM keeps more of what it knows, and silver keeps its grades.
    Row("augsbert_cosent", "AugSBERT variant: CoSENTLoss, silver scores = the cross-encoder's probabilities",
        ("experiment=augsbert_reference", "loss=cosent", "task.silver_threshold=null"),
        baseline="augsbert_cosent_gold_only", quick=("task.gold_size=64",)),
    Row("augsbert_cosent_gold_only", "the same CoSENT bi-encoder on the 10k gold pairs only",
        ("experiment=augsbert_gold_only", "loss=cosent"), quick=("task.gold_size=64",)),
    # The AugSBERT paper's own setting (issue #21): scarce in-domain gold scored pairs, silver from unlabelled
    # in-domain sentences by semantic search; 3 seeds, each also drawing the gold slice.
    Row("augsbert_sts", "AugSBERT, paper's setting: 1k gold STSb pairs, nearest-neighbour silver, cosine loss",
        ("experiment=augsbert_sts",), baseline="augsbert_sts_gold_only", quick=AUG_QUICK, seeds=AUG_SEEDS),
    Row("augsbert_sts_gold_only", "the same bi-encoder on the 1k gold STSb pairs only",
        ("experiment=augsbert_sts_gold_only",), quick=AUG_QUICK, seeds=AUG_SEEDS),
    Row("augsbert_korsts", "Korean AugSBERT: 1k gold KorSTS pairs, nearest-neighbour silver, KorSTS",
        ("experiment=augsbert_korsts",), baseline="augsbert_korsts_gold_only", quick=AUG_QUICK, seeds=AUG_SEEDS),
    Row("augsbert_korsts_gold_only", "the same bi-encoder on the 1k gold KorSTS pairs only",
        ("experiment=augsbert_korsts_gold_only",), quick=AUG_QUICK, seeds=AUG_SEEDS),
    Row("tsdae", "TSDAE on unlabelled NLI sentences, CLS pooling", ("experiment=tsdae_reference",), reference=0.7449),
    Row("korean_zero_shot", "Korean: all-MiniLM-L6-v2 as published, KorSTS",
        ("experiment=embedding_zero_shot", "data@task.sts=korsts")),
    Row("korean", "Korean: triplet recipe on KorNLI, KorSTS", ("experiment=embedding_korean",)),
]


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("rows", nargs="*", help=f"rows to run (default: all): {', '.join(r.name for r in ROWS)}")
    parser.add_argument("--plain", action="store_true", help="also run plain sentence-transformers here")
    args = parser.parse_args(argv)
    if unknown := set(args.rows) - {r.name for r in ROWS}:
        parser.error(f"unknown rows {sorted(unknown)}; rows: {', '.join(r.name for r in ROWS)}")
    rows = [r for r in ROWS if not args.rows or r.name in args.rows]
    figures = {} if args.quick else _previous_figures()
    failed, plain_runs = [], {}
    for row in rows:
        print(f"-- {row.name}", flush=True)
        overrides = row.overrides + (QUICK + row.quick if args.quick else ())
        try:
            figures[row.name] = run_seeds(run_job, overrides, row.seeds[:1] if args.quick else row.seeds, _summary) \
                if row.seeds else _summary(run_job(*overrides))
            figures[row.name]["machine"] = machine()
            if row.plain_recipe and (args.plain or row.beats_plain):
                # Timed right after ours; a row whose recipe was timed already in this run reuses that figure.
                if row.plain_recipe not in plain_runs:
                    plain_runs[row.plain_recipe] = _plain_run(row.plain_recipe, args.quick)
                figures[row.name]["plain_here"] = plain_runs[row.plain_recipe]
        except RuntimeError as err:
            print(err, file=sys.stderr)
            failed.append(row.name)
            figures.pop(row.name, None)
        print(json.dumps(figures.get(row.name)), flush=True)
        if not args.quick:  # after every row: a long bench stopped part way keeps the rows it finished
            record(figures)
    print(render(figures, quick=args.quick))
    return 1 if failed else 0


def record(figures: dict) -> None:
    table = render(figures)
    write_results(NAME, figures, table)
    update_docs(NAME, table)


def _summary(metrics: dict) -> dict:
    keep = ("val/spearman_cosine", "start/spearman_cosine", "val/cross_encoder_spearman", "train/examples",
            "train/gold_pairs", "train/silver_pairs", "train/samples_per_second", "train/runtime_s",
            "train/eval_runtime_s", "time/total_s", "wall_s", "steal_pct")
    return {key: metrics[key] for key in keep if key in metrics}


def _plain_run(recipe: str, quick: bool) -> dict:
    quick_slices = ["--max-train-samples", "128", "--max-eval-samples", "200"]  # as QUICK
    steal = StealMeter()
    stdout, wall = run_script(HERE / "plain_st_reference.py", recipe, *(quick_slices if quick else []))
    result = json.loads(stdout.strip().splitlines()[-1])
    return {**result, "wall_s": round(wall, 1), "steal_pct": steal.percent()}


def _previous_figures() -> dict:
    """Rows not rerun keep their last figures, so that one row can be redone alone."""
    path = RESULTS / f"{NAME}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def render(figures: dict, quick: bool = False) -> str:
    lines = [
        "### Sentence embeddings (seed 004, issue #3)" + (" — QUICK plumbing check, not results" if quick else ""),
        "",
        "STS validation spearman of cosine similarity (STSb; KorSTS for the Korean rows), 2-core CPU, MiniLM.",
        "`seed 004`: its own figure (its model and data: bert-base-uncased for AugSBERT and TSDAE, MNLI train). "
        "`plain ST`: plain sentence-transformers 6.2 on the mirror's data with the same settings (issue #3). "
        "samples/s: the trainer's figure for the training alone (ours less the in-training STS evaluation, which the "
        "plain run does after training); `plain` is the issue's figure, or this machine's with `--plain` (timed right "
        "after ours, and then the figure the check uses). CPU steal: the share of the CPU the hypervisor took "
        "during each run. "
        "metrics.json of each run keeps the trainer's raw figures.",
        "",
        "| row | preset | seed 004 | plain ST | ours | samples/s (ours / plain) | wall time | check |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in ROWS:
        got = figures.get(row.name)
        if got is None:
            lines.append(f"| {row.label} | `{_preset(row)}` | {_num(row.reference)} | {_num(row.plain)} "
                         "| not run | | | |")
            continue
        speed, plain_speed = training_speed(got), _plain_speed(row, got)
        speeds = f"{_num(speed, 1)} / {_num(plain_speed, 1)}" if speed and plain_speed else _num(speed, 1)
        speeds += _steal(got) if speed else ""
        lines.append(f"| {row.label} | `{_preset(row)}` | {_num(row.reference)} | {_plain_cell(row, got)} | "
                     f"{_num(got['val/spearman_cosine'])}{spread_cell(got)}{_notes(got)} | {speeds} | "
                     f"{_duration(got['wall_s'])} | {_check(row, got, figures)} |")
    return "\n".join(lines)


def _check(row: Row, got: dict, figures: dict) -> str:
    """The issue's targets, where it sets one for the row."""
    score = got["val/spearman_cosine"]
    if row.beats_plain and "plain_here" in got:
        min_ratio, tolerance = row.beats_plain
        plain = got["plain_here"]
        ratio = (training_speed(got) or 0) / plain["train_samples_per_second"]
        return _verdict(ratio >= min_ratio and abs(score - plain["spearman_cosine"]) <= tolerance,
                        f"{ratio:.2f}× plain (≥ {min_ratio}×), spearman {plain['spearman_cosine']:.4f} ± {tolerance}")
    if row.name == "zero_shot":
        return _verdict(abs(score - UNTRAINED_MINILM) <= 0.0005, f"{UNTRAINED_MINILM} ± 0.0005")
    if row.plain is not None:
        plain_speed = _plain_speed(row, got)
        speed_ok = (training_speed(got) or 0) >= 0.97 * plain_speed
        above = row.name != "mnrl_triplets" or score > UNTRAINED_MINILM
        goal = f"{row.plain} ± 0.005, ≥ 0.97× {plain_speed:.1f}/s" + (", > 0.8672" if row.name == "mnrl_triplets"
                                                                       else "")
        return _verdict(abs(score - row.plain) <= 0.005 and speed_ok and above, goal)
    if row.baseline in figures:
        return _verdict(*beats(got, figures[row.baseline]))
    return ""


def _plain_speed(row: Row, got: dict) -> float | None:
    """Plain sentence-transformers' samples/s: timed on this machine right after ours (`--plain`) where it was,
    since this VM's speed drifts from day to day; else the issue's figure."""
    return got.get("plain_here", {}).get("train_samples_per_second") or row.plain_speed


def _steal(got: dict) -> str:
    """The hypervisor's share of the CPU during the runs: what the machine, not the code, took from the speed."""
    ours, plain = got.get("steal_pct"), got.get("plain_here", {}).get("steal_pct")
    if ours is None:
        return ""
    return f" (CPU steal {ours:.0f} %" + (f" / {plain:.0f} %)" if plain is not None else ")")


def training_speed(got: dict) -> float | None:
    """Samples/s of the training alone: the trainer's runtime less its STS evaluations, which the plain run does
    after training, outside its own runtime."""
    if "train/samples_per_second" not in got:
        return None
    runtime, evaluation = got["train/runtime_s"], got.get("train/eval_runtime_s", 0.0)
    return got["train/samples_per_second"] * runtime / (runtime - evaluation)


def _notes(got: dict) -> str:
    notes = []
    if "start/spearman_cosine" in got:
        notes.append(f"start: {_num(got['start/spearman_cosine'])}")
    if "val/cross_encoder_spearman" in got:
        notes.append(f"cross-encoder: {_num(got['val/cross_encoder_spearman'])}")
    if "train/silver_pairs" in got:
        notes.append(f"{got['train/gold_pairs']:,.0f} gold + {got['train/silver_pairs']:,.0f} silver")
    elif "train/examples" in got:
        notes.append(f"{got['train/examples']:,.0f} examples")
    return f" ({'; '.join(notes)})" if notes else ""


def _plain_cell(row: Row, got: dict) -> str:
    here = got.get("plain_here")
    return _num(row.plain) + (f" (here: {_num(here['spearman_cosine'])})" if here else "")


def _preset(row: Row) -> str:
    return " ".join(o.removeprefix("experiment=") for o in row.overrides)


def _verdict(ok: bool, goal: str) -> str:
    return f"{'✅' if ok else '❌'} {goal}"


def _num(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


if __name__ == "__main__":
    raise SystemExit(main())
