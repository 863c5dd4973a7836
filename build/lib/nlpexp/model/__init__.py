"""The model group: `conf/model/<name>.yaml` builds a ModelSpec."""

from nlpexp.model.spec import ModelSpec

__all__ = ["ModelSpec"]
