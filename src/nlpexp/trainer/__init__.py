"""The trainer group: run settings mapped onto the HF TrainingArguments family, plus the optimizer hook."""

from nlpexp.trainer.callbacks import NonFiniteLossGuard
from nlpexp.trainer.settings import ConfiguredOptimization, TrainerSettings

__all__ = ["ConfiguredOptimization", "NonFiniteLossGuard", "TrainerSettings"]
