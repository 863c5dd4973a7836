"""Threat model: experiment configs may come from other people. A config must not run code outside the
allow-list, and secrets from the environment must never land in a run dir, a log or the ledger."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, ListConfig

from nlpexp.config import TARGET_ALLOWLIST
from nlpexp.errors import NlpexpError

SECRET_ENV_VARS = ("WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_TOKEN")
_SECRET_KEY = re.compile(r"(api_?key|token|secret|password)", re.IGNORECASE)
REDACTED = "<redacted>"


def allowed_target(target: str) -> bool:
    return any(target.startswith(p[:-1]) if p.endswith(".*") else target == p for p in TARGET_ALLOWLIST)


def iter_targets(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(config path, _target_) of every node, without resolving interpolations elsewhere."""
    if isinstance(node, DictConfig):
        if "_target_" in node:
            yield path or "<root>", str(node._get_node("_target_")._value())
        for key in node:
            yield from iter_targets(node._get_node(key), f"{path}.{key}" if path else str(key))
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            yield from iter_targets(node._get_node(i), f"{path}[{i}]")


def check_targets(cfg: DictConfig) -> None:
    """Refuse the whole config before anything is built if one `_target_` is outside the allow-list."""
    for path, target in iter_targets(cfg):
        if not allowed_target(target):
            raise NlpexpError(
                f"{path}._target_={target!r} is not allowed: configs may only build objects from "
                f"{', '.join(TARGET_ALLOWLIST)} (see nlpexp.config.TARGET_ALLOWLIST)"
            )


def redact(obj: Any) -> Any:
    """A copy of a plain container with secret-looking keys and secret env values replaced."""
    secrets = [v for name in SECRET_ENV_VARS if (v := os.environ.get(name)) and len(v) >= 8]
    return _redact(obj, secrets)


def _redact(obj: Any, secrets: list[str]) -> Any:
    if isinstance(obj, dict):
        return {k: REDACTED if _SECRET_KEY.search(str(k)) and obj[k] else _redact(v, secrets) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_redact(v, secrets) for v in obj]
    if isinstance(obj, str):
        for secret in secrets:
            obj = obj.replace(secret, REDACTED)
    return obj
