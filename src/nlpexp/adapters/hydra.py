"""Hydra's private API that nlpexp reads (pinned: hydra-core in pyproject; tests/test_help.py fails when it changes)."""


def command_line_flags() -> set[str]:
    """Every option string of Hydra's own command-line parser (-m, --cfg, -cd, ...)."""
    from hydra._internal.utils import get_args_parser

    return {option for action in get_args_parser()._actions for option in action.option_strings}
