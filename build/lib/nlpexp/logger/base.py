from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transformers import TrainerCallback


class RunLogger(TrainerCallback):
    """Receives the trainer's logs during training (TrainerCallback) and the run's start and end."""

    def start(self, config: Mapping[str, Any]) -> None:
        """Called before the task is set up, with the composed config (resolved)."""

    def finish(self, hparams: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        """Called once with the final metrics (also after a failed run, with what there is)."""
