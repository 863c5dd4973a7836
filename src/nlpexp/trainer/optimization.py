"""Parameter groups: what a task adds untrained learns at its own rate, `optimizer.head_lr`.

Parameters a task adds untrained (the SoftmaxLoss head, a classification head, the cross-attention of a
warm-started encoder-decoder) start far from where they should be, and at a fine-tuning rate they hardly move in a
short run: `optimizer.head_lr` gives them their own rate (null: the encoder's `optimizer.lr`). Measured on the main
job (SBERT-NLI, MiniLM, 250 steps of 16): with one rate of 2e-5 the head stays at chance (SNLI accuracy 0.48, the
loss at ln 3); plain sentence-transformers with head 2e-3 reaches 0.579.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

log = logging.getLogger(__name__)
GROUP_KEYS = ("optimizer_dict", "params")  # where the HF trainers hand over parameter groups
# Keys of the optimizer group that are not arguments of the optimizer class.
OWN_KEYS = ("weight_decay", "head_lr")  # weight decay goes per group (none on biases and norms), as in HF


def optimizer_settings(factory: functools.partial) -> dict:
    """The optimizer class's keyword arguments from the config's partial."""
    settings = {k: v for k, v in factory.keywords.items() if k not in OWN_KEYS}
    if "betas" in settings:
        settings["betas"] = tuple(settings["betas"])
    return settings


def make_optimizer(trainer, factory: functools.partial, new_parameters: Sequence):
    """The config's optimizer over the parameter groups the trainer would build itself (a sentence-transformers
    trainer adds its loss's own parameters, e.g. the SoftmaxLoss head), the new parameters moved to head_lr."""
    _, kwargs = trainer.get_optimizer_cls_and_kwargs(trainer.args, trainer.model)
    groups = next((kwargs[k] for k in GROUP_KEYS if k in kwargs), None) or default_groups(trainer, trainer.model)
    head_lr = factory.keywords.get("head_lr")
    if head_lr is not None and new_parameters:
        log.info("optimizer: %d new parameter tensor(s) (%d values) at lr %g, the others at lr %g",
                 len(new_parameters), sum(p.numel() for p in new_parameters), head_lr, factory.keywords["lr"])
        groups = with_head_lr(groups, new_parameters, head_lr)
    return factory.func(groups, **optimizer_settings(factory))


def default_groups(trainer, model) -> list[dict]:
    """The groups transformers' create_optimizer builds when none are handed over: decay and no decay."""
    decay = set(trainer.get_decay_parameter_names(model))
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [{"params": [p for n, p in trainable if n in decay], "weight_decay": trainer.args.weight_decay},
            {"params": [p for n, p in trainable if n not in decay], "weight_decay": 0.0}]


def with_head_lr(groups: list[dict], new_parameters: Sequence, head_lr: float) -> list[dict]:
    """`groups` with the new parameters moved into groups of their own at `head_lr` (weight decay kept); the
    others' groups come first, so that the logged learning rate stays the encoder's."""
    new_ids = {id(p) for p in new_parameters}
    kept, moved = [], []
    for group in groups:
        params = list(group["params"])
        kept.append({**group, "params": [p for p in params if id(p) not in new_ids]})
        if new := [p for p in params if id(p) in new_ids]:
            moved.append({**group, "params": new, "lr": head_lr})
    found = sum(len(g["params"]) for g in moved)
    if found != len(new_ids):
        raise RuntimeError(f"{len(new_ids) - found} of the {len(new_ids)} new parameters are not among the "
                           f"trainer's parameters; they would not be trained")
    return kept + moved
