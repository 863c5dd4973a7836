"""The private member of accelerate that nlpexp uses (tests/test_adapters_hf.py pins it)."""

from __future__ import annotations

import sys


def reset_accelerator_state() -> None:
    """Forget the AcceleratorState of a finished run (the next run's TrainingArguments would reset it too); the
    process group (the partial state) is kept."""
    accelerate_state = sys.modules.get("accelerate.state")
    if accelerate_state is not None:
        accelerate_state.AcceleratorState._reset_state(reset_partial_state=False)
