"""Trainer callbacks every task gets."""

from __future__ import annotations

import math

from transformers import TrainerCallback

from nlpexp.errors import NlpexpError


class NonFiniteLossGuard(TrainerCallback):
    """Stop the run with one clear line when the training loss becomes NaN or infinite.

    Needs `logging_nan_inf_filter=False` (set by TrainerSettings), or the trainer hides such losses.
    """

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise NlpexpError(
                f"training loss became {loss} at step {state.global_step}; lower optimizer.lr, check the data "
                f"for broken rows, or use trainer.precision=32"
            )
