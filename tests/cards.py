"""Model cards written with libyaml (registered by tests/conftest.py; installed in the fork servers by
tests/forkwarm.py): sentence-transformers writes a README.md at every save, and huggingface_hub dumps its YAML
header about six times and parses it once per card with pure-Python PyYAML.

PyYAML's C emitter and parser (CDumper, CSafeLoader) give the same text and the same data as the pure-Python ones
for text whose characters are all in the Basic Multilingual Plane; above it (emoji) libyaml escapes what PyYAML
writes as is, so such data goes to the pure-Python functions as before. Checked on the 380 cards the suite had left
in /tmp (every dump with each line break, every parse: identical) and on Korean, long and quoted strings.
Measured on the shared 2-core machine (2026-12-07): a card's parse 8 -> 1 ms, a dump 3.7 -> 0.7 ms; in a tiny_bert
smoke run (3 saves), a card 34 -> 13 ms CPU.
"""

from __future__ import annotations

import sys
import types
from functools import partial


def _in_bmp(data) -> bool:
    """Whether every string in `data` (keys too) is in the Basic Multilingual Plane."""
    if isinstance(data, str):
        return not data or max(data) <= "\uffff"
    if isinstance(data, dict):
        return all(_in_bmp(key) and _in_bmp(value) for key, value in data.items())
    if isinstance(data, list | tuple):
        return all(_in_bmp(item) for item in data)
    return True


def install() -> None:
    """Replace huggingface_hub's yaml_dump (where it was imported too) and its card parser's safe_load for good."""
    import huggingface_hub.repocard
    import huggingface_hub.repocard_data
    import huggingface_hub.utils._fixes
    import yaml

    if not getattr(yaml, "__with_libyaml__", False) or getattr(huggingface_hub.repocard.yaml, "_libyaml", False):
        return
    original = huggingface_hub.utils._fixes.yaml_dump
    c_dump = partial(yaml.dump, stream=None, allow_unicode=True, Dumper=yaml.CDumper)

    def yaml_dump(data, *args, **kwargs):
        return c_dump(data, *args, **kwargs) if not args and _in_bmp(data) else original(data, *args, **kwargs)

    # huggingface_hub.utils._fixes (where later imports find it), and the modules that imported it already under
    # their own name (sentence_transformers.base.model_card, huggingface_hub.repocard_data): their __dict__ only,
    # as a lazy module's getattr would import
    for module in list(sys.modules.values()):
        if getattr(module, "__dict__", {}).get("yaml_dump") is original:
            module.yaml_dump = yaml_dump

    def safe_load(stream):
        if isinstance(stream, str) and _in_bmp(stream):
            return yaml.load(stream, Loader=yaml.CSafeLoader)
        return yaml.safe_load(stream)

    card_yaml = types.ModuleType("yaml")
    card_yaml.__dict__.update(vars(yaml))
    card_yaml.safe_load = safe_load
    card_yaml._libyaml = True
    huggingface_hub.repocard.yaml = card_yaml


def pytest_configure(config):
    """In each test process, not in an xdist controller (it runs no test). A hook, not a fixture: the fork servers
    run this file without pytest (which a forked `python run.py` must not find imported)."""
    if getattr(config, "workerinput", None) is not None or not getattr(config.option, "numprocesses", None):
        install()
