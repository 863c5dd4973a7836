"""Each task's smoke metrics pinned in one file (torchtune's loss regression): a change that moves a figure fails
here, even when it moves two fresh runs alike (which `test_same_seed_same_metrics` cannot see).

Every numeric value of metrics.json is compared, except the timings (they vary from run to run). The file changes
on purpose only: `NLPEXP_UPDATE_REGRESSION=1 pytest tests/test_regression_metrics.py` rewrites the entries of the
cases it runs (and drops entries of cases that no longer exist); review the diff before committing it."""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
from pathlib import Path

import pytest

from nlpexp.pipeline import run

PINNED = Path(__file__).parent / "regression" / "smoke_metrics.json"
UPDATE = os.environ.get("NLPEXP_UPDATE_REGRESSION") == "1"
# Two runs of every case on one machine gave bit-identical figures; the margin is for another CPU or BLAS build
# (a different summation order moves a float32 result by ~1e-7 relative) and stays far below any real change.
REL, ABS = 1e-4, 1e-5
TIMING = re.compile(r"^time/|runtime|per_second|_seconds?$|_s$")

_TINY_BERT = ("model=tiny_bert", "debug=smoke", "logger=none")
# Few, short, greedy generations keep the tiny random models (which never emit EOS) fast.
_SUMMARIES = ("task=summarization", "data=dialogsum", "debug=smoke", "logger=none", "data.max_eval_samples=8",
              "generation.num_beams=1", "generation.max_new_tokens=8")
CASES = {
    "sbert_nli": ("task=sbert_nli", *_TINY_BERT),
    "embedding_mnrl": ("task=embedding", "loss=mnrl", *_TINY_BERT),
    "embedding_cosent": ("task=embedding", "loss=cosent", *_TINY_BERT),
    "augsbert": ("task=augsbert", "task.gold_size=32", *_TINY_BERT),
    # Mean pooling: the random tiny BERT's CLS vectors are near-identical (cosine 0.99999 +- 3e-6), so with TSDAE's
    # own CLS pooling every figure would rank float32 rounding noise, which moves with the CPU's vector unit.
    "tsdae": ("task=tsdae", "task.pooling=mean", *_TINY_BERT),
    "classification": ("task=classification", "data=imdb", *_TINY_BERT),
    "summarization_seq2seq": (*_SUMMARIES, "model=tiny_bart"),
    "summarization_decoder_only": (*_SUMMARIES, "model=tiny_gpt2"),
}


def pinned_figures(metrics: dict) -> dict[str, float]:
    """The metrics a change of behaviour moves: numbers, timings and throughputs left out."""
    return {key: float(value) for key, value in metrics.items()
            if isinstance(value, int | float) and not isinstance(value, bool) and not TIMING.search(key)}


def differences(pinned: dict[str, float], got: dict[str, float]) -> list[str]:
    """One line per metric that changed, appeared or disappeared; empty when `got` matches `pinned`."""
    lines = [f"  {key}: pinned {pinned[key]!r}, got {got[key]!r}" for key in sorted(pinned.keys() & got.keys())
             if not _close(pinned[key], got[key])]
    lines += [f"  {key}: pinned {pinned[key]!r}, got nothing (disappeared)" for key in sorted(pinned.keys() - got)]
    lines += [f"  {key}: pinned nothing, got {got[key]!r} (appeared)" for key in sorted(got.keys() - pinned)]
    return lines


def _close(pinned: float, got: float) -> bool:
    return math.isfinite(got) and abs(got - pinned) <= max(ABS, REL * abs(pinned))


def _update_pinned(change) -> None:
    """Read-modify-write under an exclusive lock: parallel test processes each rewrite their own entries."""
    PINNED.parent.mkdir(exist_ok=True)
    with open(PINNED.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = json.loads(PINNED.read_text()) if PINNED.is_file() else {}
        change(entries)
        text = json.dumps(entries, indent=2, sort_keys=True, allow_nan=False) + "\n"  # a NaN is never pinned
        PINNED.with_suffix(".tmp").write_text(text)
        PINNED.with_suffix(".tmp").replace(PINNED)


@pytest.mark.parametrize("case", CASES)
def test_smoke_metrics_match_the_pinned_ones(case, compose_run, tmp_path):
    got = pinned_figures(run(compose_run(*CASES[case])))
    if UPDATE:
        _update_pinned(lambda entries: entries.update({case: got}))
        return
    pinned = json.loads(PINNED.read_text()) if PINNED.is_file() else {}
    assert case in pinned, f"{PINNED.name} has no entry {case!r}; NLPEXP_UPDATE_REGRESSION=1 pins it"
    changed = differences(pinned[case], got)
    assert not changed, (f"{case}: metrics differ from {PINNED.name} (rel {REL}, abs {ABS}); if on purpose, rerun "
                         "with NLPEXP_UPDATE_REGRESSION=1 and commit the diff\n" + "\n".join(changed))


def test_every_pinned_entry_is_a_case():
    if UPDATE:
        _update_pinned(lambda entries: [entries.pop(name) for name in set(entries) - set(CASES)])
        return
    assert sorted(json.loads(PINNED.read_text())) == sorted(CASES)


def test_a_changed_appeared_or_disappeared_metric_is_reported():
    pinned = {"val/a": 0.5, "val/b": 1.0, "val/gone": 2.0, "val/zero": 0.0}
    got = {"val/a": 0.5 * (1 + REL / 2), "val/b": 1.0 + 3 * REL, "val/new": 3.0, "val/zero": float("nan")}
    assert differences(pinned, got) == [
        f"  val/b: pinned 1.0, got {1.0 + 3 * REL!r}", "  val/zero: pinned 0.0, got nan",
        "  val/gone: pinned 2.0, got nothing (disappeared)", "  val/new: pinned nothing, got 3.0 (appeared)"]
    assert differences(pinned, pinned) == []


def test_timings_are_left_out_and_counts_kept():
    metrics = {"time/total_s": 1.2, "train/runtime_s": 0.4, "train/eval_runtime_s": 0.1,
               "train/samples_per_second": 80.0, "train/examples": 64, "val/loss": 0.7, "note": "text", "flag": True}
    assert pinned_figures(metrics) == {"train/examples": 64.0, "val/loss": 0.7}
