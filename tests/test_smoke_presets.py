"""Every preset under debug=smoke, in-process with tiny models: it runs, reports its metrics, and training moved the
weights (`python run.py -m 'experiment=glob(*)' debug=smoke logger=none` runs the same presets with their own
models)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nlpexp.config import PROJECT_ROOT, compose
from nlpexp.pipeline import run

PRESETS = sorted(p.stem for p in (PROJECT_ROOT / "experiments").glob("*.yaml"))


def _tiny_twin(preset: str) -> str:
    """The tiny random model that stands in for the preset's own (the bundled MiniLM takes ~20 s a run)."""
    cfg = compose([f"experiment={preset}", "debug=smoke"])
    if cfg.task._target_.endswith("SummarizationTask"):
        return "tiny_bert2bert"
    return cfg.model.name if cfg.model.name.startswith("tiny_") else "tiny_bert"


def _tensors(folder) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _largest_change(start: dict[str, torch.Tensor], trained: dict[str, torch.Tensor]) -> float:
    """The largest change of a starting weight; trained names may carry a prefix the start's lack (`encoder.`)."""
    changes = []
    for name, tensor in trained.items():
        twin = next((name[i + 1:] for i in range(-1, len(name)) if (i < 0 or name[i] == ".") and
                     name[i + 1:] in start and start[name[i + 1:]].shape == tensor.shape), None)
        if twin is not None:
            changes.append((tensor.float() - start[twin].float()).abs().max().item())
    assert changes, "no tensor of the trained model matched one of the starting model"
    return max(changes)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_runs_under_smoke_and_trains(preset, compose_run, tmp_path):
    from nlpexp.config import instantiate

    cfg = compose_run(f"experiment={preset}", "debug=smoke", "logger=none", f"model={_tiny_twin(preset)}")
    metrics = run(cfg)
    assert cfg.optimized_metric in metrics
    if cfg.mode != "train":
        return
    start = Path(instantiate(cfg.model).path())  # the random-init weights, written once per process
    # Adam moves a weight by about the learning rate per step: 4 steps of a linear decay from `lr` move some weight
    # by ~2.5 lr (1.75e-5 at summarization_reference_baseline's 1e-5); a warmup of 100 steps would leave ~lr / 100.
    assert _largest_change(_tensors(start), _tensors(tmp_path / "run" / "best_model")) > cfg.optimizer.lr
    assert f"start/{cfg.optimized_metric.partition('/')[2]}" in metrics
