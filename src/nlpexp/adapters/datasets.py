"""The private API of `datasets` that nlpexp reads (pinned in pyproject; tests/test_cache.py fails when it changes)."""


def fingerprint(rows) -> str:
    """datasets' own fingerprint of a Dataset: a hash of its in-memory table, updated with every transform's
    arguments since (stable across processes with datasets 5.2). Where datasets cannot hash a transform it picks a
    random one: a cache keyed on it then misses, it is never wrong."""
    return rows._fingerprint
