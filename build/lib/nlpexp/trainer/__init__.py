"""The trainer group: run settings mapped onto the HF TrainingArguments family, plus the optimizer hook."""

from nlpexp.trainer.settings import ConfiguredOptimization, TrainerSettings

# NonFiniteLossGuard (nlpexp.trainer.callbacks) is not re-exported: it imports transformers, and the
# pipeline imports this package before anything heavy so that config errors come back in a second.
__all__ = ["ConfiguredOptimization", "TrainerSettings"]
