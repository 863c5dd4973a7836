from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nlpexp import metrics as metric_names


class RunLogger:
    """The trainer's logs during training (a TrainerCallback), the run's start and end around it.

    A TrainerCallback by protocol, not by base class: the trainer calls `on_<event>(args, state, control, ...)` on
    each callback, and a logger answers the events it defines (the rest are no-ops, __getattr__). Subclassing
    transformers.TrainerCallback would import transformers (3 s) whenever a config naming a logger is validated,
    since the schema reads a logger's keys from its constructor.

    Every sink records the same names (nlpexp.metrics) through its record(): per-step series from the trainer's
    logs, the starting model's `start/` scores (and `eval/` twins) at step 0, the run's figures under metrics.json's
    keys (record_results): `val/`, `test/` at the best checkpoint's step, the rest at the last step.
    """

    _last_step = 0
    _best_step: int | None = None  # the best checkpoint's global step, once training ended with one
    _start_drawn = False
    _resumed = False  # continues the log of an interrupted run, which drew the start already

    def __getattr__(self, name: str):
        if name.startswith("on_"):  # an event this logger does not handle, including ones transformers adds later
            return lambda *args, **kwargs: None
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def start(self, config: Mapping[str, Any]) -> None:
        """Before the task is set up, with the resolved config."""

    def record(self, values: Mapping[str, float], step: int) -> None:
        """`values` at `step` to the tracker (nothing before it started)."""

    def start_scores(self, metrics: Mapping[str, float]) -> None:
        """Called with the starting model's `start/<metric>` scores before training starts (not on a resume)."""
        if not self._resumed:
            self.record(metric_names.start_scores(metrics), 0)
            self._start_drawn = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        self._last_step = state.global_step
        if values := metric_names.from_trainer_log_step(logs or {}):
            self.record(values, state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        best = state.best_model_checkpoint  # `.../checkpoint-N`, as trainer.build.fit reads the best val scores
        self._best_step = int(best.rsplit("-", 1)[-1]) if best else None  # the last training's (augsbert: 2)

    def record_results(self, metrics: Mapping[str, float]) -> None:
        """The run's figures beside (never in) the per-step series, and the start of a task that trains without
        run_trainer. Without a best checkpoint (eval mode, no evaluation while training) all at the last step."""
        if not self._start_drawn:
            self.start_scores(metrics)
        summary = metric_names.tracker_summary(metrics)
        best = metric_names.of_best_checkpoint(summary) if self._best_step is not None else {}
        if best:
            self.record(best, self._best_step)
        self.record({key: value for key, value in summary.items() if key not in best}, self._last_step)

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
