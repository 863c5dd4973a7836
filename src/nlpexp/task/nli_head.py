"""The SoftmaxLoss classifier of task=sbert_nli, which sentence-transformers neither trains across processes nor saves:
NliHead (the trainer callback that does both, and logs its training accuracy) and the head's files in a model folder
(`nli_head.safetensors` + `nli_head.json`). Imported when the task runs: it imports torch and transformers.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from sentence_transformers.sentence_transformer.losses import SoftmaxLoss
from transformers import TrainerCallback

HEAD_WEIGHTS, HEAD_CONFIG = "nli_head.safetensors", "nli_head.json"


class NliHead(TrainerCallback):
    """What the trainer does not do for the SoftmaxLoss classifier, which lives in the loss, not in the model: keep
    it in every checkpoint (loaded with the one training resumes from or ends with), train one head across
    processes (DDP averages the model's gradients only) and log its training accuracy, counted from the logits
    the loss computes anyway. First among the callbacks: the loggers see the accuracy."""

    def __init__(self, loss: SoftmaxLoss):
        self.loss, self.logits, self.correct, self.total = loss, None, 0, 0
        loss.classifier.register_forward_hook(lambda module, args, output: setattr(self, "logits", output))
        loss.register_forward_hook(self._count)

    def _count(self, module, args, output) -> None:
        labels = args[1] if len(args) > 1 else None
        if labels is not None and self.logits is not None and torch.is_grad_enabled():
            self.correct += (self.logits.argmax(-1) == labels.view(-1)).sum().item()
            self.total += labels.numel()

    def resume(self, checkpoint: str | None) -> None:  # called by nlpexp.trainer.build.fit
        if checkpoint is not None:
            load_head(self.loss, checkpoint)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        average_gradients(self.loss.classifier)  # the head is outside the model: never clipped, so exact here

    def on_log(self, args, state, control, logs=None, **kwargs):
        if "loss" in logs:  # every process logs: the counts are summed over them all
            correct, total = sum_over_processes([self.correct, self.total])
            self.correct = self.total = 0
            if total:
                logs["train_accuracy"] = correct / total

    def on_save(self, args, state, control, **kwargs):
        if args.should_save:
            save_head(self.loss, Path(args.output_dir) / f"checkpoint-{state.global_step}")

    def on_train_end(self, args, state, control, **kwargs):
        if args.load_best_model_at_end and state.best_model_checkpoint:
            load_head(self.loss, state.best_model_checkpoint)


def average_gradients(module) -> None:
    """Average `module`'s gradients over the processes, as DDP does for the model it wraps: for parameters that
    live outside that model (the loss's own classifier), which each process would otherwise train alone."""
    dist = _process_group()
    if dist is None:
        return
    for param in module.parameters():
        if param.grad is not None:
            dist.all_reduce(param.grad)  # a sum: gloo has no average
            param.grad.div_(dist.get_world_size())


def sum_over_processes(values: list[float]) -> list[float]:
    """`values` summed position by position over the processes (every process must call it)."""
    dist = _process_group()
    if dist is None:
        return list(values)
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, list(values))  # objects: no device to pick, whatever the backend
    return [sum(column) for column in zip(*gathered, strict=True)]


def _process_group():
    """torch.distributed when the trainer has joined several processes in a group, else None."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist
    return None


def save_head(loss: SoftmaxLoss, folder: Path, label_names=None) -> None:
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in loss.classifier.state_dict().items()}, str(folder / HEAD_WEIGHTS))
    config = {**loss.get_config_dict(), "embedding_dimension": loss.model.get_embedding_dimension()}
    if label_names is not None:
        config["label_names"] = list(label_names)
    elif (folder / HEAD_CONFIG).is_file():
        config["label_names"] = json.loads((folder / HEAD_CONFIG).read_text()).get("label_names")
    (folder / HEAD_CONFIG).write_text(json.dumps(config, indent=2))


def load_head(loss: SoftmaxLoss, folder: str | Path) -> bool:
    """Load a saved classifier into `loss`; False when the folder has none."""
    from safetensors.torch import load_file

    weights = Path(folder) / HEAD_WEIGHTS
    if not weights.is_file():
        return False
    loss.classifier.load_state_dict(load_file(str(weights)))
    return True
