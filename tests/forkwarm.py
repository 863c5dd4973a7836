"""What a fork server (tests/forkserver.py) computes once for all its children: the caches the test processes keep
(tests/caches.py, tests/conftest.py's model-card templates, tests/cards.py's libyaml), installed in the server and
filled there before it forks, so that a forked `python run.py` finds them as an in-process run does.

Each cache keeps a result that depends only on its input (the text of a config file, an interpolation string, a
template's source), so a child renders, composes and resolves exactly what a fresh process would; only the parsing
and compiling is not repeated. Measured on the shared 2-core machine (2026-12-07): a forked smoke run of tiny_bert
compiled the sentence-transformers model-card template at each of its 3 saves (0.3 CPU-s each) and parsed the ~40
config files twice (the command-line gate's compose, then Hydra's).
"""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path


def install(project_root: Path) -> None:
    """Install the caches in this process for good (the server's: its children inherit them) and fill them with
    the project's config files and the installed sentence-transformers' model-card templates."""
    _cache_config_files()
    _cache_interpolations()
    _cache_templates()
    import runpy

    runpy.run_path(str(Path(__file__).with_name("cards.py")))["install"]()  # (`tests` is not importable here)
    from omegaconf import OmegaConf

    for folder in ("conf", "experiments"):
        for path in sorted((project_root / folder).rglob("*.yaml")):
            try:
                OmegaConf.load(path)
            except Exception:  # a file the runs would fail on: they fail on it themselves, uncached
                pass
    import sys

    import jinja2

    if "sentence_transformers" not in sys.modules:  # a server that left it out (forkserver.PRINT_ON_IMPORT)
        return
    package = Path(sys.modules["sentence_transformers"].__file__).parent
    for path in sorted(package.glob("*/model_card_template.md")):
        jinja2.Template(path.read_text(encoding="utf-8"))  # as huggingface_hub's ModelCard.from_template does


def _cache_config_files() -> None:
    """OmegaConf.load keyed by the file's text (tests/caches.py _config_files_parsed_once: the same text gives the
    same config; a deep copy is handed out, as Hydra edits what it loads)."""
    from omegaconf import OmegaConf

    OmegaConf.load = staticmethod(config_file_cache(OmegaConf.load))


def config_file_cache(original, keep=lambda cfg: cfg, copy_out=copy.deepcopy):
    """`original` (OmegaConf.load) parsing each text once: `keep(parsed)` is kept per (text, options) and
    `copy_out(kept)` handed out at each call; what cannot be read as text goes to `original` as it is."""
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
            parsed[key] = keep(original(file_, **kwargs))  # a parse error propagates: nothing kept
        return copy_out(parsed[key])

    return load


def _cache_interpolations() -> None:
    """OmegaConf's grammar parse of a `${...}` string (tests/caches.py _interpolations_parsed_once)."""
    from omegaconf import _utils, base, grammar_parser

    cached = functools.lru_cache(maxsize=8192)(grammar_parser.parse)
    for module in (grammar_parser, _utils, base):  # the two import the function itself
        module.parse = cached


def _cache_templates() -> None:
    """A Jinja template compiled once per source (tests/conftest.py _model_card_template_compiled_once)."""
    import jinja2

    jinja2.Environment.from_string = template_cache(jinja2.Environment.from_string)


def template_cache(original):
    """`original` (jinja2.Environment.from_string) compiling each source once per environment: a template compiled
    from the same source in the same environment renders the same text."""
    compiled = {}

    def from_string(self, source, globals=None, template_class=None):
        if globals is not None or not isinstance(source, str):
            return original(self, source, globals, template_class)
        key = (id(self), source, template_class)
        if key not in compiled:
            compiled[key] = (self, original(self, source, globals, template_class))  # keeps `self` alive: ids stay
        return compiled[key][1]

    return from_string
