"""The data group: `conf/data/<name>.yaml` builds a DataSpec."""

from nlpexp.data.spec import DataSpec

__all__ = ["DataSpec"]
