"""Evaluators built on their first call, so that a run's first training step does not wait for the validation
data to be read, cleaned and encoded into an evaluator (issue 20: time to first step)."""

from __future__ import annotations

from collections.abc import Callable

from sentence_transformers.base.evaluation import BaseEvaluator


class LazyEvaluator(BaseEvaluator):
    """Stands in for the evaluator `build()` returns, building it at the first evaluation."""

    def __init__(self, build: Callable[[], BaseEvaluator]):
        super().__init__()
        self._build = build
        self._evaluator: BaseEvaluator | None = None

    @property
    def evaluator(self) -> BaseEvaluator:
        if self._evaluator is None:
            self._evaluator = self._build()
        return self._evaluator

    def __call__(self, model, output_path=None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
        metrics = self.evaluator(model, output_path, epoch, steps)
        self.primary_metric, self.greater_is_better = self.evaluator.primary_metric, self.evaluator.greater_is_better
        return metrics


def lazy_evaluator(available: bool, build: Callable[[], BaseEvaluator]) -> LazyEvaluator | None:
    """A LazyEvaluator of `build`, or None where there is nothing to evaluate on (decided now, from the config,
    since the trainer refuses a run that evaluates without an evaluator before it starts)."""
    return LazyEvaluator(build) if available else None
