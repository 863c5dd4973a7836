"""`nlpexp <command>`: runs (the ledger), registry (versioned models), tb (TensorBoard helpers).

Every command reads its default paths from the composed config's `paths` group, the same values a run uses.
What a user can get wrong is one `error:` line and exit 2 in every command (`nlpexp runs|registry|tb`,
`python -m nlpexp.sweep`): their parsers are `ArgumentParser`, whose error() raises NlpexpError, which `run_cli`
prints; the argument types below check paths and ports as they are parsed, so that no command starts on a path
it cannot use. `nlpexp ... | head` ends quietly.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path

from nlpexp import NlpexpError, first_line

COMMANDS = {  # command -> its module, and what `nlpexp --help` says it does
    "runs": ("nlpexp.runs", "the ledger: every run so far, filtered, sorted by a metric (--sort val/accuracy)"),
    "registry": ("nlpexp.registry",
                 "versioned models: register a run's best model, list, show, publish to MLflow (name@best)"),
    "tb": ("nlpexp.tb", "TensorBoard: list the runs with event files and their tags, serve a run or a tree"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"]):
        width = max(map(len, COMMANDS))
        print(f"usage: nlpexp {{{','.join(COMMANDS)}}} ... (nlpexp COMMAND --help: its options)",
              *(f"  {name.ljust(width)}  {summary}" for name, (_, summary) in COMMANDS.items()),
              "Runs and sweeps: python run.py --help", sep="\n")
        return 0
    if not argv or argv[0] not in COMMANDS:
        given = f"unknown command {argv[0]!r}" if argv else "no command given"
        print(f"error: nlpexp: {given}; choose one of {', '.join(COMMANDS)} (nlpexp --help says what each does)",
              file=sys.stderr)
        return 2
    return __import__(COMMANDS[argv[0]][0], fromlist=["main"]).main(argv[1:])


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors (a bad or missing argument, an unknown option, a type's check) raise NlpexpError;
    subcommands' parsers are of this class too."""

    def error(self, message: str):
        raise NlpexpError(f"{self.prog}: {message}")


def existing_dir(text: str) -> Path:  # the argument types: what a command's parser checks as it reads
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is {_what(Path(text))}; give an existing folder")
    return Path(text)


def existing_file(text: str) -> Path:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text} is {_what(Path(text))}; give an existing file")
    return Path(text)


def new_file(text: str) -> Path:
    """An argument type: a file to write, in a folder that exists (nothing is created but the file)."""
    path = Path(text)
    if path.is_dir() or not path.parent.is_dir():
        what = "a folder" if path.is_dir() else f"in {path.parent}, which is {_what(path.parent)}"
        raise argparse.ArgumentTypeError(f"{text} is {what}; give a file in an existing folder")
    return path


def port(text: str) -> int:
    """An argument type: a TCP port, 1-65535."""
    if not (text.isdigit() and 1 <= int(text) <= 65535):
        raise argparse.ArgumentTypeError(f"{text!r} is not a port; give a number in [1, 65535]")
    return int(text)


def _what(path: Path) -> str:
    return "a folder" if path.is_dir() else "a file" if path.exists() else "missing"


def run_cli(command: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a command's main: an NlpexpError or OSError is one `error:` line, exit 2; Ctrl-C one line, exit 130;
    a reader that stops early (`| head`) ends it quietly, not with a traceback."""
    try:
        code = command(argv)
        sys.stdout.flush()  # inside the try: a closed pipe surfaces here, not at interpreter exit
        return code
    except BrokenPipeError:
        # Python would still try to flush stdout at exit and print the error: point it at /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except NlpexpError as err:
        print(f"error: {first_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:
        where = f"cannot use {err.filename}: " if err.filename else ""
        print(f"error: {where}{err.strerror or first_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def command(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """A command's main as the shell and its callers (nlpexp, tests) run it: through run_cli."""
    return functools.wraps(main)(functools.partial(run_cli, main))


if __name__ == "__main__":
    raise SystemExit(main())
