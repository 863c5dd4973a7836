"""One redaction step between a run and everything it writes or sends (files, logs, loggers, the ledger): by value
(secret-looking environment variables, URL passwords) and by key (last whole word a secret word), as
docs/security.md ("No secret is written") says. The values are taken at import and only ever added to, never
re-read from a later os.environ, which `hydra.job.env_set` may have changed (it would launder a token).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REDACTED = "<redacted>"
MIN_SECRET_LENGTH = 8
_SECRET_ENV_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
SECRET_WORDS = frozenset({"token", "key", "apikey", "secret", "password", "passwd", "pwd", "credential",
                          "credentials"})
# A tokenizer's special tokens are text, not credentials.
_SPECIAL_TOKENS = frozenset(f"{name}_token" for name in ("pad", "eos", "bos", "cls", "sep", "unk", "mask",
                                                         "special", "decoder_start"))
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)([^@\s/]+)(@)", re.IGNORECASE)
_ASSIGNMENT = re.compile(r"(?P<key>[A-Za-z_][\w.\-]*)=(?P<value>[^\s,'\"]+)")


_TAKEN: set[str] = set()


def take_secrets(environ: Mapping[str, str] | None = None) -> None:
    """Remember the secret values of `environ` (default: os.environ now). Called at import and where a process
    starts a run from its own environment, before any config could change it; a value once taken is never
    forgotten, so a config that overwrites or renames the variable later cannot take it out of redaction."""
    environ = os.environ if environ is None else environ
    _TAKEN.update(v for name, v in environ.items() if _SECRET_ENV_NAME.search(name) and len(v) >= MIN_SECRET_LENGTH)


def take_config_secrets(cfg: Any) -> None:
    """The values of a config's secret-named keys (`+db_password=...`) are secret values too, wherever they are
    copied: a preset's `note: ${db_password}` is redacted like the key itself. What does not resolve yet (the
    gate's `${hydra:...}`) is taken where it does: in the run."""
    from omegaconf import OmegaConf

    for path in secret_key_paths(OmegaConf.to_container(cfg, resolve=False), ""):
        value = OmegaConf.select(cfg, path, default=None, throw_on_resolution_failure=False)
        if isinstance(value, str | int) and not isinstance(value, bool) and len(str(value)) >= MIN_SECRET_LENGTH:
            _TAKEN.add(str(value))


def secret_key_paths(node: Any, prefix: str) -> list[str]:
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    paths = []
    for key, value in items:
        path = f"{prefix}.{key}" if prefix else str(key)
        paths += [path] if isinstance(key, str) and is_secret_key(key) else secret_key_paths(value, path)
    return paths


def secret_values() -> list[str]:
    """The values taken so far, longest first (so a value containing another goes whole)."""
    return sorted(_TAKEN, key=len, reverse=True)


take_secrets()  # at process start: run.py imports this module before Hydra composes or applies env_set


def is_secret_key(name: str) -> bool:
    """True for `hf_token`, `WANDB_API_KEY`, `apiKey`, `db.password`; False for `tokenizer`, `pad_token_id`."""
    words = [w.lower() for w in _WORDS.findall(str(name).rsplit(".", 1)[-1])]
    return bool(words) and words[-1] in SECRET_WORDS and "_".join(words) not in _SPECIAL_TOKENS


def redact_text(text: str, secrets: list[str] | None = None) -> str:
    for secret in secret_values() if secrets is None else secrets:
        text = text.replace(secret, REDACTED)
    text = _URL_PASSWORD.sub(rf"\1{REDACTED}\3", text)
    return _ASSIGNMENT.sub(lambda m: f"{m['key']}={REDACTED}" if is_secret_key(m["key"]) else m[0], text)


def redact(obj: Any, secrets: list[str] | None = None) -> Any:
    """A copy of a plain container (dicts, lists, strings) with secrets replaced by <redacted>."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(obj, dict):
        return {k: REDACTED if is_secret_key(k) and obj[k] not in (None, "") else redact(v, secrets)
                for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact(v, secrets) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj, secrets)
    return obj


def redact_logs() -> None:
    """Every log record of this process (run.log, console, whatever handler Hydra configures) redacted at creation."""
    base = logging.getLogRecordFactory()
    if getattr(base, "redacting", False):
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = base(*args, **kwargs)
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info:  # the formatter prints exc_text when set: the traceback redacted
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        return record

    factory.redacting = True
    logging.setLogRecordFactory(factory)


class _ConsoleStream:
    """sys.stdout / sys.stderr of the command line: every write redacted (Hydra's error reports and tracebacks
    included) unless `redacting` is off (the usage text); once its reader has gone (`run.py ... | head`), the
    rest goes to /dev/null instead of raising BrokenPipeError from whatever printed (a run goes on, in run.log)."""

    def __init__(self, stream, redacting: bool):
        self.wrapped, self.redacting = stream, redacting

    def write(self, text: str) -> int:
        try:
            self.wrapped.write(redact_text(text) if self.redacting else text)
        except BrokenPipeError:
            self._divert()
        return len(text)

    def flush(self) -> None:
        try:
            self.wrapped.flush()
        except BrokenPipeError:
            self._divert()

    def _divert(self) -> None:
        os.dup2(os.open(os.devnull, os.O_WRONLY), self.wrapped.fileno())

    def __getattr__(self, name: str):
        return getattr(self.wrapped, name)


def redact_output(redacting: bool = True) -> None:
    """For the command line (run.py), first thing: the console (before Hydra resolves `ext://sys.stdout` for its
    handlers) and every log record; the secrets of the environment the command was started with."""
    take_secrets()
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, _ConsoleStream):
            stream.redacting = redacting
        else:
            setattr(sys, name, _ConsoleStream(stream, redacting))
    if redacting:
        redact_logs()


def redact_hydra_files() -> None:
    """Rewrite what Hydra itself wrote before the job started: <run>/.hydra/{config,hydra,overrides}.yaml and
    the sweep dir's multirun.yaml (overrides as typed, env_set resolved)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from nlpexp.io import write_text_atomic

    if not HydraConfig.initialized():
        return
    hydra = HydraConfig.get()
    files = [Path(hydra.sweep.dir) / "multirun.yaml"] if hydra.mode.name == "MULTIRUN" else []
    if hydra.output_subdir is not None:
        folder = Path(hydra.runtime.output_dir) / hydra.output_subdir
        files += [folder / name for name in ("config.yaml", "hydra.yaml", "overrides.yaml")]
    secrets = secret_values()
    for path in files:
        if path.is_file():
            data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
            clean = redact(data, secrets)
            if clean != data:
                write_text_atomic(path, OmegaConf.to_yaml(OmegaConf.create(clean)))
