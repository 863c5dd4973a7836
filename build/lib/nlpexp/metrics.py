"""Metric names: one flat dict with keys `<split>/<metric>` (`val/spearman_cosine`, `test/accuracy`)."""

from __future__ import annotations

import math
from collections.abc import Mapping

# Trainer bookkeeping that is not a model metric.
_BOOKKEEPING = {"runtime", "samples_per_second", "steps_per_second", "epoch", "sequential_score",
                "model_preparation_time"}


def from_trainer_logs(logs: Mapping[str, float], split: str = "val") -> dict[str, float]:
    """`eval_spearman_cosine` -> `val/spearman_cosine`."""
    return {
        f"{split}/{key[5:]}": float(value)
        for key, value in logs.items()
        if key.startswith("eval_") and key[5:] not in _BOOKKEEPING and isinstance(value, int | float)
    }


def prefixed(metrics: Mapping[str, float], split: str) -> dict[str, float]:
    return {f"{split}/{k}": float(v) for k, v in metrics.items() if k not in _BOOKKEEPING}


def split_name(role: str) -> str:
    return {"validation": "val"}.get(role, role)


def format_table(metrics: Mapping[str, float]) -> str:
    width = max((len(k) for k in metrics), default=6)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    for key, value in sorted(metrics.items()):
        lines.append(f"{key:<{width}}  {value:.4f}" if math.isfinite(value) else f"{key:<{width}}  {value}")
    return "\n".join(lines)
