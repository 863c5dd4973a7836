"""`python run.py --help`: the presets with what each one is, read from the conf dir (never a list that goes stale).

conf/hydra/help/nlpexp.yaml calls `${nlpexp_presets:<group>}`; each option is described by the first comment
line of its file.
"""

from __future__ import annotations

from pathlib import Path


def describe_group(group: str, config_dir: Path | None = None) -> str:
    """`  name  first comment line` for every option of `group`, aligned, one per line. `group` is the name of one
    of the project's config groups, never a path: `${nlpexp_presets:/any/dir}` in a config would otherwise list
    the files and first comment lines of any folder."""
    from nlpexp.config import CONFIG_DIR, group_dir
    from nlpexp.errors import NlpexpError

    known = {"experiment", *(p.name for p in CONFIG_DIR.iterdir() if p.is_dir())}
    if config_dir is None and (not isinstance(group, str) or group not in known):
        raise NlpexpError(f"${{nlpexp_presets:{group}}}: name a config group ({', '.join(sorted(known))}), "
                          f"not a path")
    files = sorted((config_dir.joinpath(group) if config_dir else group_dir(group)).glob("*.yaml"))
    width = max((len(f.stem) for f in files), default=0)
    return "\n".join(f"  {f.stem.ljust(width)}  {_first_comment(f)}".rstrip() for f in files)


def _first_comment(path: Path, limit: int = 110) -> str:
    """The first sentence of the file's leading comment, cut at a word near `limit` characters."""
    words: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        if "@package" not in line:
            words += line.lstrip("#").split()
    sentence = " ".join(words).split(". ")[0]
    if len(sentence) <= limit:
        return sentence
    return sentence[:limit].rsplit(" ", 1)[0] + " ..."
