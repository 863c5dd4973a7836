from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transformers import TrainerCallback


class RunLogger(TrainerCallback):
    """Receives the trainer's logs during training (TrainerCallback) and the run's start and end.

    Every sink records the same names (nlpexp.metrics): per-step series from the trainer's logs, the starting
    model's `start/` scores at step 0 (start_scores), the run's final figures under tracker_summary()'s names.
    """

    def start(self, config: Mapping[str, Any]) -> None:
        """Called before the task is set up, with the composed config (resolved)."""

    def start_scores(self, metrics: Mapping[str, float]) -> None:
        """Called with the starting model's `start/<metric>` scores before training starts (not on a resume)."""

    def finish(self, hparams: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        """Called once with the final metrics (also after a failed run, with what there is)."""


def hparams_of(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a run is compared by (MLflow params, TensorBoard hparams), from its resolved config: task,
    model, data, seed, mode and the scalar keys of optimizer, scheduler, trainer and generation."""
    task = str((config.get("task") or {}).get("_target_", "")).rsplit(".", 1)[-1]
    flat = {"task": task, "model": (config.get("model") or {}).get("name"),
            "data": (config.get("data") or {}).get("name"), "seed": config.get("seed"), "mode": config.get("mode")}
    for group in ("optimizer", "scheduler", "trainer", "generation"):
        for key, value in (config.get(group) or {}).items():
            if not key.startswith("_") and isinstance(value, int | float | str | bool):
                flat[f"{group}.{key}"] = value
    return flat
