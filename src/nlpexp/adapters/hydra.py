"""Hydra's private API: its command-line parser, its start-up (search path, the main Hydra object) and the
defaults list of a composition (which file a config came from). nlpexp.gate and nlpexp.file_keys call these.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any


def args_parser():
    """Hydra's own argparse parser of `python run.py ...` (-m, -cp, -cd, -cn, --cfg, overrides)."""
    from hydra._internal.utils import get_args_parser

    return get_args_parser()


def command_line_flags() -> set[str]:
    return {option for action in args_parser()._actions for option in action.option_strings}


def main_hydra(calling_file: str, config_path: str, config_dir: str | None):
    """The Hydra object `@hydra.main` would create (hydra._internal.utils._run_hydra): the same search path."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_automatic_config_search_path
    from hydra.core.config_search_path import SearchPathQuery

    search_path = create_automatic_config_search_path(calling_file, None, config_path)
    if config_dir is not None:
        search_path.prepend(provider="command-line", path=f"file://{os.path.abspath(config_dir)}",
                            anchor=SearchPathQuery(provider="schema"))
    return Hydra.create_main_hydra2(task_name="run", config_search_path=search_path)


def loaded_configs(hydra: Any, name: str, overrides: Sequence[str], multirun: bool) -> Iterator[tuple[str, str, Any]]:
    """(search path entry, config path, config) of every config the composition merges, in Hydra's order."""
    from hydra._internal.defaults_list import create_defaults_list

    loader = hydra.config_loader
    parsed, repo = loader._parse_overrides_and_create_caching_repo(name, list(overrides))
    defaults = create_defaults_list(repo=repo, config_name=name, overrides_list=parsed, prepend_hydra=True,
                                    skip_missing=multirun)
    for default in defaults.defaults:
        if default.config_path is not None:
            loaded = loader._load_single_config(default=default, repo=repo)
            yield loaded.path, default.config_path, loaded.config


def sources(hydra: Any, name: str, overrides: Sequence[str]) -> list[str]:
    """The search path entries (`file:///...`, `pkg://...`) a composition reads from."""
    _, repo = hydra.config_loader._parse_overrides_and_create_caching_repo(name, list(overrides))
    return [source.full_path() for source in repo.get_sources()]


def job_error(job) -> BaseException | None:
    """A failed Hydra job's exception, without raising it: JobReturn.return_value raises it after printing
    "Error executing job with overrides ..." on stderr, a second error line beside nlpexp's own."""
    from hydra.core.utils import JobStatus

    return None if job.status is JobStatus.COMPLETED else job._return_value
