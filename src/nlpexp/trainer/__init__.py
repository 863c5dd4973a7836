"""The trainer group: run settings mapped onto the HF TrainingArguments family (nlpexp.trainer.build builds and
trains every trainer; it imports transformers, which this package does not, so that config errors come back in a
second)."""

from nlpexp.trainer.settings import TrainerSettings

__all__ = ["TrainerSettings"]
