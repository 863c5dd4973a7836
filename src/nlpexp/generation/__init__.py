"""The generation group (`conf/generation/<name>.yaml`): decoding settings for tasks that generate text."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated

from nlpexp.rules import Int, Positive

log = logging.getLogger(__name__)


@dataclass(eq=False)
class GenerationSettings:
    """How generate() decodes (beam search width, length, repetition and length penalties).

    They are written into the model's GenerationConfig, so every generate() call uses them: the trainer's
    evaluations during training, the final evaluation, and a saved model reloaded later.
    """
    num_beams: Positive = 4
    max_new_tokens: Positive = 100
    no_repeat_ngram_size: Annotated[int, Int(0)] = 0
    length_penalty: float = 1.0
    early_stopping: bool = True

    def __post_init__(self) -> None:
        self.length_penalty = float(self.length_penalty)
        self.early_stopping = bool(self.early_stopping)

    def generate_kwargs(self) -> dict:
        """The generate() arguments. The beam-only ones get their neutral values under greedy decoding,
        because transformers refuses to save a GenerationConfig that sets them without beams."""
        beams = self.num_beams > 1
        if not beams and (self.length_penalty != 1.0 or self.early_stopping is False):
            log.info("generation.num_beams=1: length_penalty and early_stopping only apply to beam search")
        return {
            "num_beams": self.num_beams,
            "max_new_tokens": self.max_new_tokens,
            "no_repeat_ngram_size": self.no_repeat_ngram_size,
            "length_penalty": self.length_penalty if beams else 1.0,
            "early_stopping": self.early_stopping if beams else False,
            "min_length": 0,  # a checkpoint's own minimum (some summarisers ship one) would override max_new_tokens
        }
