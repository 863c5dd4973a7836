"""Time to first step (issue 20): validation data is read and its evaluators built at the first evaluation, not
before the first training step. (With trainer.evaluate_start=true, the default, the starting model is scored on
validation before training by design: start/<metric>; the laziness is what plain scripts are compared with.)"""

from __future__ import annotations

import pytest
from transformers import TrainerCallback

from nlpexp.data import DataSpec
from nlpexp.pipeline import run
from nlpexp.task import Task


@pytest.mark.parametrize("task", ["sbert_nli", "embedding"])
def test_validation_data_is_first_read_after_the_first_training_step(compose_run, monkeypatch, task):
    events = []

    class FirstStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            events.append(f"step {state.global_step}")

    load = DataSpec.load
    monkeypatch.setattr(DataSpec, "load", lambda self, role, *a, **k: events.append(f"load {role}") or
                        load(self, role, *a, **k))
    callbacks = Task.training_callbacks
    monkeypatch.setattr(Task, "training_callbacks", lambda self: [*callbacks(self), FirstStep()])

    metrics = run(compose_run(f"task={task}", "model=tiny_bert", "debug=smoke", "trainer.evaluate_start=false"))
    assert "val/spearman_cosine" in metrics  # the evaluation did happen, at step 2 (debug=smoke)
    first_validation = events.index("load validation")
    assert events.index("step 1") < first_validation
    assert "load train" in events[:events.index("step 1")]
