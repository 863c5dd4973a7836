"""Does our STS evaluation cost more than encoding its sentences once? (issue 9)

Times nlpexp's STSb-validation evaluation (`nlpexp.task.evaluators.sts_evaluator`: each distinct sentence
encoded once, then four similarities and their correlations) on the bundled MiniLM against a plain
`model.encode` of the same distinct sentences with the same batch size. The two alternate (the order flips
every repeat) and the figure is the median of the per-repeat ratios; target <= 1.05. sentence-transformers'
own EmbeddingSimilarityEvaluator, which encodes both sides of the pairs separately, is timed alongside.

    python benchmarks/bench_eval_speed.py            # the 1,500 validation pairs, 5 repeats
    python benchmarks/bench_eval_speed.py --quick    # 300 pairs, 2 repeats: checks the script
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from common import bench_parser, write_results

TARGET = 1.05
COLUMNS = ("sentence1", "sentence2", "score")


def load(quick: bool):
    """The bundled MiniLM, STSb validation pairs and the evaluation batch size, as a run composes them."""
    from nlpexp.config import compose, instantiate

    limit = ["data.max_eval_samples=300"] if quick else []
    # Nothing is written: the run dir is only named, because composing needs one.
    cfg = compose([f"paths.output_dir={Path(tempfile.gettempdir()) / 'nlpexp-bench-eval-speed'}", "model=minilm",
                   "data=stsb", *limit])
    pairs = instantiate(cfg.data).load("validation", COLUMNS, text_columns=COLUMNS[:2])
    return instantiate(cfg.model).sentence_transformer(), pairs, cfg.trainer.eval_batch_size


def encode_timer(model) -> list[float]:
    """Times every model.encode call into the returned list (the caller clears it)."""
    seconds: list[float] = []
    encode = model.encode

    def timed_encode(*args, **kwargs):
        started = time.perf_counter()
        try:
            return encode(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - started)

    model.encode = timed_encode
    return seconds


def timed(work) -> tuple[float, object]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def measure(quick: bool) -> dict:
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    from nlpexp.task.evaluators import sts_evaluator

    model, pairs, batch_size = load(quick)
    encoding = encode_timer(model)
    ours = sts_evaluator(pairs, batch_size)
    theirs = EmbeddingSimilarityEvaluator(ours.sentences1, ours.sentences2, ours.scores, batch_size=batch_size,
                                          name="", write_csv=False, similarity_fn_names=ours.similarity_fn_names)

    def evaluate_ours():
        encoding.clear()
        return ours(model)

    variants = {
        "nlpexp": evaluate_ours,
        "plain_encode": lambda: model.encode(ours.distinct, batch_size=batch_size, show_progress_bar=False),
        "sentence_transformers": lambda: theirs(model),
    }
    variants["plain_encode"]()  # warm-up: the first encode pays one-off costs
    times: dict[str, list[float]] = {name: [] for name in variants}
    metrics = {}
    overheads: list[float] = []  # the evaluation's seconds outside model.encode: what a loaded CPU blurs least
    for repeat in range(2 if quick else 5):
        order = list(variants) if repeat % 2 == 0 else list(reversed(variants))
        for name in order:
            seconds, result = timed(variants[name])
            times[name].append(round(seconds, 3))
            metrics[name] = result
            if name == "nlpexp":
                overheads.append(round(seconds - sum(encoding), 4))
    ratios = [ours_s / plain_s for ours_s, plain_s in zip(times["nlpexp"], times["plain_encode"], strict=True)]
    theirs_ratios = [t / p for t, p in zip(times["sentence_transformers"], times["plain_encode"], strict=True)]
    return {"pairs": len(ours.scores), "sentences": 2 * len(ours.scores), "distinct_sentences": len(ours.distinct),
            "batch_size": batch_size, "seconds": times, "median_ratio": round(statistics.median(ratios), 3),
            "nlpexp_outside_encode_s": overheads,
            "sentence_transformers_median_ratio": round(statistics.median(theirs_ratios), 3),
            "spearman_cosine": {"nlpexp": metrics["nlpexp"]["spearman_cosine"],
                                "sentence_transformers": metrics["sentence_transformers"]["spearman_cosine"]}}


def table(figures: dict) -> str:
    median = {name: statistics.median(values) for name, values in figures["seconds"].items()}
    rows = (("nlpexp STS evaluation (distinct sentences once)", "nlpexp", figures["median_ratio"]),
            (f"plain `model.encode` of the {figures['distinct_sentences']} distinct sentences", "plain_encode", 1.0),
            ("sentence-transformers EmbeddingSimilarityEvaluator", "sentence_transformers",
             figures["sentence_transformers_median_ratio"]))
    return "\n".join([
        f"## STS evaluation speed (bundled MiniLM, STSb validation, {figures['pairs']} pairs, batch "
        f"{figures['batch_size']}{', quick' if figures['quick'] else ''})",
        "",
        "| what | median time | / plain encode (median of repeats) |",
        "|---|---|---|",
        *(f"| {label} | {median[key]:.2f} s | {ratio:.3f} |" for label, key, ratio in rows),
        "",
        f"Target: nlpexp / plain encode <= {TARGET}; met: {'yes' if figures['meets_target'] else 'no'}. "
        f"Of the nlpexp evaluation, {statistics.median(figures['nlpexp_outside_encode_s']):.3f} s (median) is "
        f"spent outside model.encode. "
        f"spearman_cosine: {figures['spearman_cosine']['nlpexp']:.5f} (nlpexp), "
        f"{figures['spearman_cosine']['sentence_transformers']:.5f} (sentence-transformers).",
    ])


def main(argv: list[str] | None = None) -> int:
    args = bench_parser(__doc__).parse_args(argv)
    figures = {"quick": args.quick, **measure(args.quick)}
    figures["meets_target"] = figures["median_ratio"] <= TARGET
    markdown = table(figures)
    write_results("eval_speed", figures, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
