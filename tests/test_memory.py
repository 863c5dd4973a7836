"""Sweep trials share a process: each run frees what it held, a failed one too (issue 20)."""

from __future__ import annotations

import traceback

import psutil

from nlpexp import NlpexpError
from nlpexp.pipeline import run

# Wide enough that a trial's model, gradients and Adam state (about 140 MB) dwarf the allocator's noise.
WIDE = ("model=tiny_bert", "debug=smoke", "logger=none", "model.random_init.hidden_size=256",
        "model.random_init.intermediate_size=1024", "model.random_init.num_attention_heads=4", "trainer.max_steps=2",
        "data.max_eval_samples=8")
DIVERGING = "optimizer.lr=1e9"  # the loss becomes NaN at step 2: NonFiniteLossGuard fails the trial mid-training


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def test_resident_memory_after_several_trials_stays_near_the_first_trials(compose_run, tmp_path):
    kept_errors, rss = [], []  # a sweeper keeps each failed trial's exception: so does this test
    for trial in range(3):
        overrides = WIDE + ((DIVERGING,) if trial % 2 else ())
        try:
            run(compose_run(*overrides, run_dir=tmp_path / f"trial{trial}"))
        except NlpexpError as err:
            kept_errors.append(err)
        rss.append(_rss_mb())
    assert len(kept_errors) == 1, "the diverging trial must fail mid-training"
    printed = "".join(traceback.format_exception(kept_errors[0]))  # the cleared frames still print
    assert "on_log" in printed and "training loss became nan" in printed
    # Without the release, each failed trial kept about 130 MB (its traceback held the trainer and the model).
    assert max(rss[1:]) - rss[0] < 50, [round(r) for r in rss]
