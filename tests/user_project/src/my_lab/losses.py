"""InfoNCE over in-batch pairs, as a sentence-transformers loss: the task completes `model` when it builds it."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class InfoNCELoss(torch.nn.Module):
    """Each anchor against every positive of its batch: cross-entropy of cosine / temperature, its own positive
    being the right class; `symmetric` adds the positives against the anchors."""

    def __init__(self, model, temperature: float = 0.05, symmetric: bool = False):
        super().__init__()
        self.model = model
        self.temperature = temperature
        self.symmetric = symmetric

    def forward(self, sentence_features, labels=None) -> torch.Tensor:
        anchors, positives = (F.normalize(self.model(f)["sentence_embedding"], dim=-1) for f in sentence_features[:2])
        logits = anchors @ positives.T / self.temperature
        target = torch.arange(len(logits), device=logits.device)
        loss = F.cross_entropy(logits, target)
        return (loss + F.cross_entropy(logits.T, target)) / 2 if self.symmetric else loss

    def get_config_dict(self) -> dict:
        return {"temperature": self.temperature, "symmetric": self.symmetric}
