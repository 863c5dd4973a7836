"""`python run.py --help` (docs/cli.md), read from conf/ and experiments/ when asked (never a list that goes stale);
the static parts and the layout are conf/hydra/help/nlpexp.yaml. run.py prints it before Hydra starts, and before
the console's secret redaction (whose `KEY=value` rule would rewrite the usage line): the text comes only from the
checkout's config files.
"""

from __future__ import annotations

import re
import string
import textwrap
from pathlib import Path

WIDTH = 100
PRESET_GROUPS = ("experiment", "hparams_search")  # listed with a line each, not among the groups
_INDENT = "  "
# A sentence ends at ". " before a capital, not after an abbreviation ("Thakur et al. 2021", "e.g. MNLI").
_SENTENCE_END = re.compile(r"(?<!\bal)(?<!\be\.g)(?<!\bi\.e)(?<!\betc)(?<!\bvs)\.\s+(?=[A-Z0-9`(])")


def help_text(config_dir: Path | None = None, presets_dir: Path | None = None) -> str:
    """The whole --help text, its template (conf/hydra/help/nlpexp.yaml) filled in."""
    from omegaconf import OmegaConf

    from nlpexp.paths import group_dir

    config_dir = config_dir or group_dir("")
    presets_dir = presets_dir or group_dir("experiment")
    node = OmegaConf.load(group_dir("hydra") / "help" / "nlpexp.yaml")  # its ${hydra.help.*} only
    template = OmegaConf.create({"hydra": {"help": node}}).hydra.help.template
    sweeps = sorted((config_dir / "hparams_search").glob("*.yaml"))
    return string.Template(template).substitute(GROUPS=describe_groups(config_dir), SWEEPS=describe_presets(sweeps),
                                                EXPERIMENTS=describe_presets(sorted(presets_dir.glob("*.yaml"))))


def describe_groups(config_dir: Path) -> str:
    """`  group: option option ...` for each top-level group of conf/, packed several to a line where they fit."""
    groups = sorted(p for p in config_dir.iterdir() if p.is_dir() and p.name not in ("hydra", *PRESET_GROUPS))
    entries = [f"{group.name}: {' '.join(options)}" for group in groups
               if (options := sorted(f.stem for f in group.glob("*.yaml")))]
    return "\n".join(_pack(entries))


def _pack(entries: list[str]) -> list[str]:
    """Entries on lines of at most WIDTH, three spaces apart: longest first, each on the first line with room
    (first-fit decreasing: the fewest lines); one too long for a line wraps by words onto lines of its own."""
    lines: list[str] = []
    shared: list[int] = []  # indices of lines that take more entries
    for entry in sorted(entries, key=len, reverse=True):
        room = [i for i in shared if len(lines[i]) + 3 + len(entry) <= WIDTH]
        if room:
            lines[room[0]] += "   " + entry
        elif len(_INDENT + entry) <= WIDTH:
            shared.append(len(lines))
            lines.append(_INDENT + entry)
        else:
            lines += textwrap.wrap(entry, WIDTH, initial_indent=_INDENT, subsequent_indent=_INDENT * 3,
                                   break_long_words=False, break_on_hyphens=False)
    return lines


def describe_presets(files: list[Path]) -> str:
    """`  name  first sentence of its leading comment` for each file, aligned, cut to WIDTH at a word."""
    width = max((len(f.stem) for f in files), default=0)
    room = WIDTH - len(_INDENT) - width - 2
    return "\n".join(f"{_INDENT}{path.stem.ljust(width)}  {_shorten(first_sentence(path), room)}".rstrip()
                     for path in files)


def first_sentence(path: Path) -> str:
    """The first sentence of a config file's leading comment (its `@package` line left out)."""
    words: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        if "@package" not in line:
            words += line.lstrip("#").split()
    return _SENTENCE_END.split(" ".join(words), maxsplit=1)[0].rstrip(".")


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 4].rsplit(" ", 1)[0].rstrip(",;:(") + " ..."
