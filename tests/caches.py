"""What the test processes compute once and hand out again (registered by tests/conftest.py): results that depend
only on their input, kept per process, so that a cached answer is the answer the library would have computed.

Measured on the shared 2-core machine (2026-12-07, CPU seconds): a compose of the run config went 0.22 -> 0.13 s,
schema validation 0.035 -> 0.021 s; the suite composes a few thousand times in-process.
"""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _config_files_parsed_once():
    """Hydra reads every file of the defaults tree anew at each compose (and nlpexp's presets plugin every preset):
    about 40 OmegaConf.load calls, a third of a compose, most of it building the nodes. The same text gives the same
    config, so each text is parsed once and a deep copy handed out (Hydra merges and edits what it loads). The key
    is the text itself: a file rewritten by a test is parsed again."""
    from omegaconf import OmegaConf

    original = OmegaConf.load
    parsed = {}

    def load(file_, **kwargs):
        try:
            if isinstance(file_, str | os.PathLike):
                text = Path(file_).read_text(encoding="utf-8")
            else:  # an open file (Hydra's config sources): read it, then leave it where it was for the original
                start = file_.tell()
                text = file_.read()
                file_.seek(start)
        except (OSError, ValueError, AttributeError, UnicodeDecodeError):
            return original(file_, **kwargs)  # the original's own error, or its own way of reading it
        key = (text, tuple(sorted(kwargs.items())))
        if key not in parsed:
            parsed[key] = original(file_, **kwargs)  # a parse error propagates: nothing kept
        return copy.deepcopy(parsed[key])

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(OmegaConf, "load", staticmethod(load))
        yield


@pytest.fixture(scope="session", autouse=True)
def _interpolations_parsed_once():
    """OmegaConf parses each `${...}` string with its ANTLR grammar whenever a node is created, merged, validated
    or resolved: the same few dozen strings thousands of times (a tenth of a compose, 40 % of nlpexp.schema's
    validation). The parse tree of a string depends on the string alone and visiting it changes nothing; a string
    that does not parse raises each time (lru_cache keeps no exception)."""
    from omegaconf import _utils, base, grammar_parser

    cached = functools.lru_cache(maxsize=8192)(grammar_parser.parse)
    with pytest.MonkeyPatch.context() as mp:
        for module in (grammar_parser, _utils, base):  # the two import the function itself
            mp.setattr(module, "parse", cached)
        yield
