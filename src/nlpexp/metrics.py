"""Metric names: one flat dict with keys `<split>/<metric>` (`val/spearman_cosine`, `test/accuracy`), the same in
every sink; docs/tracking.md, "Metric names", lists them and the steps trackers record them at.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from nlpexp import NlpexpError

# The key only the trainer's end-of-training log has.
_END_OF_TRAINING = "train_runtime"
# Trainer bookkeeping that is not a model metric.
_BOOKKEEPING = {"runtime", "samples_per_second", "steps_per_second", "epoch", "sequential_score",
                "model_preparation_time"}
START = "start"  # the split name of the starting model's validation scores
EVAL = "eval"  # trackers' per-step validation series (transformers' name): `eval/<metric>` at each evaluation


def from_trainer_logs(logs: Mapping[str, float], split: str = "val") -> dict[str, float]:
    """`eval_spearman_cosine` -> `val/spearman_cosine`."""
    return prefixed({key[5:]: value for key, value in logs.items()
                     if key.startswith("eval_") and isinstance(value, int | float)}, split)


def from_trainer_log_step(logs: Mapping[str, float]) -> dict[str, float]:
    """What trackers record at a log step: `eval_x` -> `eval/x`, `loss`/`train_accuracy` -> `train/loss`,
    `train/accuracy` (never `train/train_...`). An evaluation's log gives its `eval/` figures only (its `epoch` is
    the training log's of the same step: once per step in every sink). The trainer's end-of-training dict gives
    nothing: the run's final metrics go to the tracker's summary at the end."""
    if _END_OF_TRAINING in logs:
        return {}
    training = {f"train/{k.removeprefix('train_')}": v for k, v in logs.items()
                if not k.startswith("eval_") and k != "total_flos" and isinstance(v, int | float)}
    return from_trainer_logs(logs, EVAL) or training


def tracker_summary(metrics: Mapping[str, float]) -> dict[str, float]:
    """metrics.json as trackers record it at the end, under the same keys; `start/x` is left out (trackers draw
    it at step 0 when training starts, see start_scores)."""
    return {key: float(value) for key, value in metrics.items() if not key.startswith(f"{START}/")}


def of_best_checkpoint(summary: Mapping[str, float]) -> dict[str, float]:
    """The figures a tracker records at the best checkpoint's step: its validation scores and the test scores of
    the model restored from it (the rest, training's figures and times, belong to the last step)."""
    return {key: value for key, value in summary.items() if key.partition("/")[0] in ("val", "test")}


def start_scores(metrics: Mapping[str, float]) -> dict[str, float]:
    """The `start/` figures of a run's metrics and their `eval/` twins: what trackers draw at step 0 (every
    `eval/<metric>` curve starts from the starting model)."""
    start = {key: float(value) for key, value in metrics.items() if key.startswith(f"{START}/")}
    return {**start, **{f"{EVAL}/{key.partition('/')[2]}": value for key, value in start.items()}}


def prefixed(metrics: Mapping[str, float], split: str) -> dict[str, float]:
    return {f"{split}/{k}": float(v) for k, v in metrics.items() if k not in _BOOKKEEPING}


def split_name(role: str) -> str:
    return {"validation": "val"}.get(role, role)


def as_start(metrics: Mapping[str, float]) -> dict[str, float]:
    """`val/spearman_cosine` -> `start/spearman_cosine`: the starting model's validation scores."""
    return {f"{START}/{key.partition('/')[2]}": float(value) for key, value in metrics.items()}


def start_of(key: str) -> str | None:
    """The `start/` twin of a validation metric (`val/accuracy` -> `start/accuracy`), None for other keys."""
    split, _, name = key.partition("/")
    return f"{START}/{name}" if split == "val" and name else None


def check_finite(metrics: Mapping[str, float], files: Mapping[str, list[str]] | None = None) -> None:
    """A run whose metric came out NaN or infinite failed: NlpexpError naming the metric and the likely data
    cause (`files`: role -> the data files the run read for it). A number that is not one must not pass for a
    result."""
    bad = sorted(key for key, value in metrics.items() if not math.isfinite(value))
    if not bad:
        return
    # the one whose cause is known first (a correlation), of the final validation before the starting model's
    key = min(bad, key=lambda k: ("pearson" not in k and "spearman" not in k, k.startswith(f"{START}/"), k))
    more = f" (and {len(bad) - 1} more metrics)" if len(bad) > 1 else ""
    split = key.partition("/")[0]
    role = {"val": "validation", START: "validation", "train": "train"}.get(split, split)
    where = f"the {role} data" + (f" ({', '.join(files[role])})" if files and files.get(role) else "")
    if "pearson" in key or "spearman" in key:
        cause = f"a correlation is undefined when the gold scores do not vary: the scores in {where} are constant " \
                f"or hold NaN/inf"
    elif "loss" in key:
        cause = f"the labels or scores of {where} hold NaN/inf, or the training diverged (lower optimizer.lr)"
    else:
        cause = f"the labels or scores of {where} hold NaN/inf, or it has no rows"
    raise NlpexpError(f"metric {key} is {metrics[key]}{more}: {cause}")


def format_table(metrics: Mapping[str, float]) -> str:
    """One row per metric; a validation metric whose starting value is known shows it and the change."""
    starts = {key: metrics[twin] for key in metrics if (twin := start_of(key)) in metrics}
    rows = [(key, value) for key, value in sorted(metrics.items())
            if not (key.startswith(f"{START}/") and f"val/{key.partition('/')[2]}" in starts)]
    width = max((len(k) for k, _ in rows), default=6)
    lines = [f"{'metric':<{width}}  {'value':>8}  {'start':>8}  {'change':>8}",
             "  ".join(["-" * width] + ["-" * 8] * 3)]
    for key, value in rows:
        line = f"{key:<{width}}  {_number(value):>8}"
        if key in starts:
            line += f"  {_number(starts[key]):>8}  {_number(value - starts[key], signed=True):>8}"
        lines.append(line)
    return "\n".join(lines)


def _number(value: float, signed: bool = False) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:+.4f}" if signed else f"{value:.4f}"
