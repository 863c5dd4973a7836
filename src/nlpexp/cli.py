"""`nlpexp <command>`: runs (the ledger), registry (versioned models), tb (TensorBoard helpers).

Every command reads its default paths from the composed config's `paths` group (conf/paths/default.yaml and the
NLPEXP_* variables it honours), the same values a run uses; `nlpexp ... | head` ends quietly.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

COMMANDS = {"runs": "nlpexp.runs", "registry": "nlpexp.registry", "tb": "nlpexp.tb"}
SUMMARIES = {
    "runs": "the ledger: every run so far, filtered, sorted by a metric (--sort val/accuracy)",
    "registry": "versioned models: register a run's best model, list, show, publish to MLflow (name@best)",
    "tb": "TensorBoard: list the runs with event files and their tags, serve a run or a tree",
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name.ljust(width)}  {SUMMARIES[name]}" for name in COMMANDS]
    return "\n".join([f"usage: nlpexp {{{','.join(COMMANDS)}}} ... (nlpexp COMMAND --help: its options)", *lines,
                      "Runs and sweeps: python run.py --help"])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"]):
        print(usage())
        return 0
    if not argv or argv[0] not in COMMANDS:
        print(usage(), file=sys.stderr)
        return 2
    module = __import__(COMMANDS[argv[0]], fromlist=["main"])
    return run_cli(module.main, argv[1:])


def run_cli(command: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a command's main; a reader that stops early (`| head`) ends it quietly, not with a traceback, and an
    error no command caught (no conf/ to read the default paths from) is one `error:` line, exit 2."""
    from nlpexp.errors import NlpexpError

    try:
        code = command(argv)
        sys.stdout.flush()  # inside the try: a closed pipe surfaces here, not at interpreter exit
        return code
    except NlpexpError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # Python would still try to flush stdout at exit and print the error: point it at /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


class _ClosedPipeTolerant:
    """sys.stdout that, once its reader has gone (`python run.py --help | head`), sends the rest to /dev/null
    instead of raising BrokenPipeError from whatever printed: Hydra would report that with a traceback."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._divert()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._divert()

    def _divert(self) -> None:
        os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def tolerate_closed_stdout() -> None:
    """run.py: a reader that stops early ends the printing quietly (a training run goes on, into run.log)."""
    if not isinstance(sys.stdout, _ClosedPipeTolerant):
        sys.stdout = _ClosedPipeTolerant(sys.stdout)


if __name__ == "__main__":
    raise SystemExit(main())
