"""What a config file from someone else may set (nlpexp.gate finds what it sets): ONE table (FILE_KEYS), by key
pattern. A file neither the project's own (conf/, experiments/) nor installed code (pkg://, structured configs)
is data (docs/security.md has the table in words): it may set the job's settings and, under `hydra:`, what shapes
a sweep and names its run dirs; the rest is the person's, though a file may repeat the project's own value of a
person's key (a saved run config does).

Patterns are dotted keys; `*` stands for one part (a logger's name). The longest matching pattern decides; a key
under `hydra:` that no pattern matches is the person's (and tests/test_config_is_data.py fails on it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nlpexp import NlpexpError
from nlpexp.adapters import child, dotted, raw
from nlpexp.config import CONFIG_DIR
from nlpexp.file_values import resolver_refusal, sweep_value_refusal


class Rule(NamedTuple):
    who: str  # "file": a foreign file may set it; "person": only the person running the command
    allows: Callable[[str, Any, dict], str | None] | None = None  # for "file": why this value is refused, or None
    safe: tuple = ()  # for "person": values a file may give it anyway (off, local, none)


ROOTS = ("runs_dir", "sweeps_dir", "cache_dir")  # where a file may send what a run writes (see paths/default.yaml)
_ROOT_REF = re.compile(r"\$\{(paths\.(output_dir|runs_dir|sweeps_dir|cache_dir)|hydra:runtime\.output_dir)\}")
# harmless parts of a dir name: a date (its format without '/' or '.'), the job's number
_PER_JOB = re.compile(r"\$\{(now:[%\w :-]*|hydra\.job\.num|hydra\.job\.id)\}")


def _confined(key: str, value: Any, roots: dict) -> str | None:
    """A path inside a run/sweep/cache root (or the run's own dir), as written and where it leads: a link inside a
    root (a run dir someone handed over) may not lead out of it. None is the project's default place."""
    if value is None:
        return None
    text, tail, base = str(value), None, None
    if ref := _ROOT_REF.match(text):
        tail, base = text[ref.end():], roots.get(ref[2] or "output_dir")
    for root in filter(None, (roots.get(name) for name in ROOTS)):
        if tail is None and (text == root or text.startswith(root.rstrip("/") + "/")):
            tail, base = text[len(root.rstrip("/")):], root
    if tail is None or not (tail == "" or tail.startswith("/")) or _escapes(tail):
        return f"a file may only name a folder inside {', '.join(f'paths.{r}' for r in ROOTS)} or the run's dir"
    leads_to = os.path.realpath(base + _PER_JOB.sub("x", tail)) if base else None
    if leads_to and not (leads_to + "/").startswith(os.path.realpath(base).rstrip("/") + "/"):
        return f"it leads to {leads_to} through a link, outside {base}"
    return None


_HUB_ID = re.compile(r"(?!.*\.\.)[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")  # `name` or `owner/name`


def _model_source(key: str, value: Any, roots: dict) -> str | None:
    """A model a file names: a Hub id (no folder here: it would be loaded from there), bundled:, registry:, or a
    run's folder inside the roots; not any local folder (its files would be copied into the run's model)."""
    text = str(value)
    hub = _HUB_ID.fullmatch(text) and not os.path.lexists(text)
    if value is None or hub or text.startswith(("bundled:", "registry:")) or not _confined(key, value, roots):
        return None
    return ("a file may name a Hub model (owner/name, not a folder here), bundled:<name>, registry:<name>[@alias] "
            "or a folder inside paths.runs_dir or sweeps_dir (give another folder on the command line)")


def _in_data_root(key: str, value: Any, roots: dict) -> str | None:
    """Data a file names is read from the data root only (a preset could otherwise train on, and so copy into
    the run's predictions and model, any file the person can read)."""
    text = None if value is None else str(value)
    if text is None or text in ("${paths.data_dir}", roots.get("data_dir")):
        return None
    root = (roots.get("data_dir") or "").rstrip("/")
    tail = text.removeprefix("${paths.data_dir}") if text.startswith("${paths.data_dir}/") else \
        text[len(root):] if root and text.startswith(root + "/") else None
    if tail is None or _escapes(tail):
        return "a file may only name data inside paths.data_dir (give another file on the command line)"
    return None


def _below_data_root(key: str, value: Any, roots: dict) -> str | None:
    """Split names (`snli/train`) are folders and files below data.root: relative, no `..`, no interpolation."""
    names = value if isinstance(value, list) else [] if value is None else [value]
    if any(str(name).startswith("/") or _escapes(str(name)) for name in names):
        return "a file may only name splits below data.root (relative names, no '..')"
    return None


def _relative(key: str, value: Any, roots: dict) -> str | None:
    if str(value).startswith("/") or _escapes(str(value)):
        return "a file may only name a folder below the sweep dir"
    return None


def _escapes(tail: str) -> bool:
    """`..`, or an interpolation other than a date or the job's number (which could name anything)."""
    plain = _PER_JOB.sub("x", tail)
    return "${" in plain or ".." in plain.split("/")


def _sweepable(key: str, value: Any, roots: dict) -> str | None:
    if key == "hydra.sweeper.params":  # null or {} sweep nothing; `${...}` would hide what it sweeps
        return "a file writes its parameters out, not as an interpolation" if isinstance(value, str) else None
    written = key.removeprefix("hydra.sweeper.params.")
    swept = dotted(written.lstrip("+~"))  # as OmegaConf reads it: `hydra[job_logging]` is hydra.job_logging
    rule = rule_for(swept)
    if swept.startswith(("hydra.", "hydra/")) or rule is None or rule.who != "file" or rule.allows is not None:
        return f"a file may not sweep {swept}: only keys it may set to any value"
    return sweep_value_refusal(written, value)


def _name(key: str, value: Any, roots: dict) -> str | None:
    """A study's name is a folder of the sweep and of the registry: letters, digits, '.', '_', '-' only."""
    from nlpexp.schema import STUDY_NAME

    return None if value is None or STUDY_NAME.ok(value) else f"a file may only give it {STUDY_NAME}"


FILE, PERSON = Rule("file"), Rule("person")
OFF, NONE = Rule("person", safe=(False,)), Rule("person", safe=(None,))
CONFINED = Rule("file", _confined)
IN_DATA = Rule("file", _in_data_root)

FILE_KEYS: dict[str, Rule] = {
    # -- the job config: every key the schema declares, the groups as a whole ...
    **{group: FILE for group in ("mode", "seed", "verbose", "optimized_metric", "model", "data", "optimizer",
                                 "scheduler", "trainer", "loss", "generation", "task", "logger", "debug")},
    # ... but the places a run writes to, its endpoints and online modes, and the dangerous switches
    "paths": PERSON,  # the roots themselves: the person's (or the project's own value)
    "task.cache_dir": CONFINED,
    # what a run reads as its data: from the data root (the person may name any file)
    **{f"{node}.{key}": IN_DATA for node in ("data", "task.sts") for key in ("root", "train", "validation", "test")},
    "data.splits": Rule("file", _below_data_root), "task.sts.splits": Rule("file", _below_data_root),
    "logger.*.log_dir": CONFINED, "logger.*.dir": CONFINED, "logger.*.run_dir": CONFINED,
    "logger.*.tracking_uri": NONE, "logger.*.registry_uri": NONE,  # credentials go where the URI points
    "logger.*.mode": Rule("person", safe=("offline", "disabled")),  # online sends the run (and the API key)
    "logger.*.entity": NONE, "logger.*.base_url": NONE, "logger.*.host": Rule("person", safe=("127.0.0.1",
                                                                                            "localhost")),
    "logger.*.serve": OFF,
    "model.trust_remote_code": OFF, "model.allow_pickle_weights": OFF,  # nlpexp.config.SWITCHES
    **{key: Rule("file", _model_source) for key in ("model.name_or_path", "model.tokenizer",
                                                     "loss.decoder_name_or_path")},  # what a run loads and copies
    # -- under hydra: what a sweep varies and how many trials, and where its dirs go ...
    "hydra.mode": FILE,
    "hydra.run.dir": CONFINED, "hydra.sweep.dir": CONFINED, "hydra.sweep.subdir": Rule("file", _relative),
    "hydra.sweeper.params": Rule("file", _sweepable),
    **{f"hydra.sweeper.{key}": FILE for key in ("n_trials", "n_jobs", "direction", "sampler", "pruner",
                                                 "failure_budget", "max_failure_rate")},
    "hydra.sweeper.study_name": Rule("file", _name),
    "hydra.launcher.n_jobs": FILE,
    # ... and nothing else: code, environment, logging, storage, where Hydra looks for configs
    **{f"hydra.{key}": PERSON for key in (
        "job", "job.env_set", "job.env_copy", "job_logging", "hydra_logging", "callbacks", "searchpath", "env",
        "sweeper", "sweeper.storage", "sweeper.studies_dir", "sweeper.registry_dir", "sweeper.promote_best",
        "launcher", "run", "sweep", "help", "hydra_help", "output_subdir", "overrides",
        "runtime", "verbose", "aliases")},
}


def rule_for(key: str) -> Rule | None:
    """The rule of the longest pattern that matches `key` or one of its parents; outside hydra a file's own key."""
    parts = key.split(".")
    best: tuple[int, int, Rule] | None = None
    for pattern, rule in FILE_KEYS.items():
        wanted = pattern.split(".")
        if len(wanted) <= len(parts) and all(w in ("*", p) for w, p in zip(wanted, parts, strict=False)):
            rank = (len(wanted), -wanted.count("*"), rule)
            best = rank if best is None or rank[:2] > best[:2] else best
    if best is None:
        return None if parts[0] == "hydra" else FILE
    return best[2]


def check_setting(file: str, key: str, value: Any, roots: dict) -> None:
    """Refuse what `file` (not the project's own) may not set, with one line naming the key and the file."""
    rule = rule_for(key)
    # `logger.mlflow: ${mine}` would bring in a tracking_uri the table never sees; `logger.tb._args_: [/elsewhere]`
    # would give a log_dir by position
    held = _restricted_below(key.removesuffix("._args_")) if (isinstance(value, str) and "${" in value) or \
        key.endswith("._args_") else None
    resolving = resolver_refusal(value)
    if resolving and not _same(value, _project_values(key)):  # a saved run config repeats the project's oc.env
        why = resolving
    elif held:
        why = f"a file may not interpolate, or give positional arguments to, a whole node that holds {held}"
    elif rule is not None and rule.who == "file":
        why = rule.allows(key, value, roots) if rule.allows else None
    elif rule is not None and (_same(value, rule.safe) or _same(value, _project_values(key))):
        why = None
    else:
        why = "only the person running the command sets it (on the command line or in their environment)"
    if why:
        raise NlpexpError(f"{key} may not be set by a config file or preset: {file} sets it to {value!r}; {why}")


def _restricted_below(key: str) -> str | None:
    """A pattern under `key` that does not let a file set anything (so `key` is more than plain settings)."""
    parts = key.split(".")
    for pattern, rule in FILE_KEYS.items():
        wanted = pattern.split(".")
        below = len(wanted) > len(parts) and all(w in ("*", p) for w, p in zip(wanted, parts, strict=False))
        if below and (rule.who != "file" or rule.allows is not None):
            return pattern
    return None


def _same(value: Any, allowed) -> bool:
    return any(type(value) is type(a) and value == a for a in allowed)


def _project_values(key: str) -> tuple:
    """The value this project's own conf/ gives `key`, as written and resolved (paths.* and logger.* only)."""
    parts = key.split(".")
    file = {"paths": CONFIG_DIR / "paths" / "default.yaml",
            "logger": CONFIG_DIR / "logger" / f"{parts[1]}.yaml" if parts[1:2] != [""] and len(parts) > 2
            and parts[1].isidentifier() else None}.get(parts[0])
    if file is None or not file.is_file():
        return ()
    node = root = OmegaConf.create({parts[0]: OmegaConf.load(file)})
    for part in parts:
        node = child(node, part) if isinstance(node, DictConfig) and part in node else None
    if node is None:
        return ()
    try:
        return raw(node), OmegaConf.select(root, key)
    except OmegaConfBaseException:  # `${paths.output_dir}`: only the run knows it
        return (raw(node),)
