"""OmegaConf's private node API: a config's values as written (an interpolation stays the string `${...}`)."""

from __future__ import annotations

from typing import Any


def child(node: Any, key: Any) -> Any:
    """The node under `key` (a DictConfig key or a ListConfig index), not its resolved value."""
    return node._get_node(key)


def raw(node: Any) -> Any:
    """A node's value as written; a plain value as it is."""
    return node._value() if hasattr(node, "_value") else node


def is_none(node: Any) -> bool:
    return node._is_none()


def is_interpolation(node: Any) -> bool:
    return node._is_interpolation()
