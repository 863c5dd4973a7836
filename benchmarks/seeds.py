"""Rows measured over several seeds: each seed is one run; the row's figure is their mean, with the spread."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

METRIC = "val/spearman_cosine"


def run_seeds(run: Callable[..., dict], overrides: Sequence[str], seeds: Sequence[int], summary: Callable) -> dict:
    """One run per seed (`seed=<s>`); the first seed's figures, the per-seed metric, and its mean and spread."""
    per_seed = {seed: summary(run(*overrides, f"seed={seed}")) for seed in seeds}
    values = [figures[METRIC] for figures in per_seed.values()]
    first = dict(next(iter(per_seed.values())))
    first.update({METRIC: statistics.fmean(values), "seeds": {str(s): f[METRIC] for s, f in per_seed.items()},
                  "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                  "wall_s": sum(f["wall_s"] for f in per_seed.values())})
    return first


def spread_cell(got: dict) -> str:
    """`mean ± sd (seeds 1, 2, 3: a / b / c)`; empty for a single run."""
    if len(got.get("seeds", {})) < 2:
        return ""
    seeds = got["seeds"]
    return (f" ± {got['sd']:.4f} (seeds {', '.join(seeds)}: " + " / ".join(f"{v:.4f}" for v in seeds.values())
            + ")")


def beats(got: dict, baseline: dict) -> tuple[bool, str]:
    """Does the row beat its baseline by more than seed-to-seed noise (the sum of their standard deviations)?"""
    gain = got[METRIC] - baseline[METRIC]
    noise = got.get("sd", 0.0) + baseline.get("sd", 0.0)
    if len(got.get("seeds", {})) < 2 or len(baseline.get("seeds", {})) < 2:
        return gain > 0, "beats gold-only (one run each: no spread to compare with)"
    return gain > noise, f"beats gold-only by more than the seeds' spread ({gain:+.4f} vs {noise:.4f})"
