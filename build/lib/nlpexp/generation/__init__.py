"""The generation group: decoding settings for tasks that generate text (`conf/generation/<name>.yaml`)."""

from nlpexp.generation.settings import GenerationSettings

__all__ = ["GenerationSettings"]
