"""What a foreign config file's values may say besides plain data (nlpexp.file_keys says which keys it may set):
which resolvers its interpolations use, that its sweep parameters are literal, and that nothing it sets copies a
secret. The environment (oc.env), Hydra's node beyond the run's dir, choices and job number (the typed command
line, env_set, the storage URL) and a secret-named setting are the person's: a file would copy them into a label
name, a model's config.json or a prediction file, where no redaction looks.
"""

from __future__ import annotations

import json
import re
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nlpexp.redaction import is_secret_key, secret_key_paths, secret_values

# Besides plain references to settings: a date, a setting by name, and these parts of Hydra's node.
FILE_RESOLVERS = {"now": None, "oc.select": None, "hydra": ("runtime.output_dir", "runtime.choices", "job.num",
                                                           "job.id", "job.name")}
_INTERPOLATION = re.compile(r"\$\{\s*([\w.\-]*)\s*(:|\$\{)?\s*([\w.\-]*)")  # an escaped `\${` too (`\\${` is not)
_REFERENCE = re.compile(r"\$\{\s*(?:oc\.select\s*:\s*)?([\w.\-\[\]]+)\s*[,}]")  # `${a.b}`, `${oc.select:a.b,x}`


def resolver_refusal(value: Any) -> str | None:
    """Why a file's value may not be resolved as written (a resolver outside FILE_RESOLVERS), or None."""
    for text in _strings(value):
        for match in _INTERPOLATION.finditer(text):
            if match[2] == "${":
                return "a file may not build a resolver or key name from an interpolation"
            readable = FILE_RESOLVERS.get(match[1], ()) if match[2] == ":" else None
            if readable == () or (readable and not match[3].startswith(readable)):
                return (f"a file's interpolations may refer to settings and use now, oc.select and hydra:{{"
                        f"{','.join(FILE_RESOLVERS['hydra'])}}} only, not {match[1]}:{match[3]} (the environment "
                        f"and the command line are the person's: give the value on the command line)")
    return None


def sweep_value_refusal(key: str, value: Any) -> str | None:
    """A file's sweep parameter is literal values (choice, range, interval, glob): as Hydra parses it (`$\\{` is
    `${` there), no interpolation, which each trial would resolve where the gate never looks."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_override(f"{key}={value}")
    if "${" in repr(parsed.value()):
        return "a file's sweep parameters are literal values, not interpolations"
    return None


def secret_copy(cfg: Any, key: str, value: Any) -> str | None:
    """What secret the setting `key` (a file's `value`) copies, or None: a reference to a setting that is or holds
    a secret-named key, or, however it is written, a resolved value that holds a secret value."""
    for path in (p for text in _strings(value) for p in _REFERENCE.findall(text)):
        node = OmegaConf.select(cfg, path, default=None, throw_on_resolution_failure=False)
        if is_secret_key(path) or (OmegaConf.is_config(node) and secret_key_paths(OmegaConf.to_container(node), "")):
            return path
    if "${" not in json.dumps(value, default=str):
        return None
    try:
        resolved = OmegaConf.select(cfg, key, default=None)
        text = json.dumps(OmegaConf.to_container(resolved, resolve=True) if OmegaConf.is_config(resolved)
                          else resolved, default=str)
    except OmegaConfBaseException:  # what only the job resolves (${hydra:runtime.output_dir}): no secret there
        return None
    return next(("a secret value" for secret in secret_values() if secret in text), None)


def _strings(value: Any):
    if isinstance(value, dict | list):
        for item in value.values() if isinstance(value, dict) else value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value
