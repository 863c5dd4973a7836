"""Where exceptions become the user's one `error:` line (run.py): inside the job (`job_errors`, logged into run.log
too) and around Hydra itself (`exit_on_error`: composition, the run dir, the sweeper); a sweep's failing trial is
re-raised, so that the sweeper records it and goes on. SIGINT and SIGTERM raise `Interrupted` (a KeyboardInterrupt)
in the main thread, so that every `finally` and the ledger line happen as for any failure. Exit codes and the stop
path: docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence

import yaml

from nlpexp import NlpexpError, first_line, is_multiprocess, omegaconf_error, world_size

log = logging.getLogger("nlpexp")
USER_ERRORS = (NlpexpError, TypeError, ValueError, OSError)  # plus OmegaConf's and Hydra's (see exit_code)
_reported: set[tuple[int, str]] = set()  # (id, first line) of the errors whose line job_errors printed, re-raised
_full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"  # the person's choice (exit_on_error sets the variable)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# The services a run talks to, by the package whose error it is: a server that fails or refuses a key is the
# environment's problem (exit 2), named by the logger's key, not a bug.
SERVICE_KEYS = {"wandb": "logger.wandb", "mlflow": "logger.mlflow"}


class Interrupted(KeyboardInterrupt):
    """A stop signal, raised in the main thread: ends a run like a failure (ledger status `interrupted`)."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")

    def __reduce__(self):
        # Pickled with its signal only: Hydra attaches the job's return to a control-flow exception, and that return
        # holds the exception again; a parallel sweep's worker sends it to the sweep (a recursion of minutes).
        return type(self), (self.signum,)


_held: list[int] | None = None  # while a checkpoint is written: the stop signals that came meanwhile


def raise_interrupted(signum, frame):
    """A stop signal's handler: Interrupted, or held while a checkpoint is written (hold_stop_signals)."""
    if _held is not None:
        _held.append(signum)  # raised by release_stop_signals, once the checkpoint is whole
        return
    raise Interrupted(signum)


def hold_stop_signals() -> None:
    """Until release_stop_signals() a stop signal waits, so that it leaves the checkpoint being written whole
    (trainer.checkpoints). Only the signals exit_on_error turned into Interrupted are held."""
    global _held
    _held = [] if _held is None else _held


def release_stop_signals() -> None:
    """End the hold; raise Interrupted for a signal that came during it."""
    global _held
    held, _held = _held, None
    if held:
        raise Interrupted(held[0])


@contextlib.contextmanager
def stop_signals_raise(signals: Sequence[int] = STOP_SIGNALS):
    """`signals` (SIGINT and SIGTERM) raise Interrupted while inside; the handlers before are put back after (a test
    goes on). A signal the process was started ignoring (nohup, a background job's SIGINT) stays ignored."""
    main = threading.current_thread() is threading.main_thread()  # only the main thread may set handlers
    before = {signum: signal.getsignal(signum) for signum in signals} if main else {}
    for signum, handler in before.items():
        if handler is not signal.SIG_IGN:
            signal.signal(signum, raise_interrupted)
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def exit_on_error(main: Callable[[], object], argv: list[str],
                  before: Sequence[Callable[[list[str]], None]] = ()) -> None:
    """Run the @hydra.main function: every failure, Hydra's own included, ends as one line and exit 2 (or 1).
    `before`: checks of the command line that must pass before Hydra builds anything (a security gate); each
    raises NlpexpError. Once they passed, the jobs need not check their config again (nlpexp.config.check_run)."""
    from nlpexp.config import gate_passed

    global _full_error
    saved = os.environ.get("HYDRA_FULL_ERROR")
    _full_error = saved == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises to us, instead of printing its own report (exit 1)
    try:
        with stop_signals_raise():
            for check in (_check_processes, *before):
                check(argv)
            with gate_passed() if before else contextlib.nullcontext():
                main()
    except (Exception, KeyboardInterrupt) as err:
        if _full_error:
            raise
        if (id(err), first_line(err)) not in _reported:
            print(f"error: {error_line(err, _job_dirs(argv))}", file=sys.stderr)
        raise SystemExit(exit_code(err)) from None
    finally:
        _reported.clear()
        os.environ.pop("HYDRA_FULL_ERROR", None)
        if saved is not None:  # as it was, for a caller that goes on (a test)
            os.environ["HYDRA_FULL_ERROR"] = saved


def _check_processes(argv: list[str]) -> None:
    """Refuse what the processes of one run cannot share: each composes its own config, so the default run dir,
    named after the time each one starts, may differ between them."""
    if not is_multiprocess():
        return
    if any(arg in ("-m", "--multirun") for arg in argv):
        raise NlpexpError(f"{world_size()} processes train one run together; a sweep (-m) is not supported, "
                          f"drop -m or launch with python run.py -m")
    if not any(arg.lstrip("+").startswith("hydra.run.dir=") for arg in argv):
        raise NlpexpError(f"{world_size()} processes must write to one run dir, and the default one is named after "
                          f"the second each starts: pass hydra.run.dir=<dir>")


@contextlib.contextmanager
def job_errors(cfg):
    """Around run.py's job: the error's line on the console and in run.log, naming the run's paths; a single run
    exits with its code (Hydra would print a report of its own), a sweep's trial and an interrupt re-raise."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        yield
    except (Exception, KeyboardInterrupt) as err:
        if type(err).__name__ == "TrialPruned":  # stopped by the sweep's pruner: not an error
            raise
        log.error("error: %s", error_line(err, run_paths(cfg)))
        if _full_error or HydraConfig.get().mode == RunMode.MULTIRUN or isinstance(err, KeyboardInterrupt):
            _reported.add((id(err), first_line(err)))  # exit_on_error does not print it again
            raise
        sys.exit(exit_code(err))


def error_line(err: BaseException, paths: dict[str, str] | None = None) -> str:
    """The message of `err` as one line that names the config key where one is known."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from nlpexp.config import hydra_error_line
    from nlpexp.paths import key_of

    paths = paths or {}
    if isinstance(err, NlpexpError):
        return first_line(err)
    if isinstance(err, KeyboardInterrupt):
        return _interrupted_line(err, paths)
    if service := _service_key(err):
        return f"{service}: {type(err).__name__}: {first_line(err)}"
    if isinstance(err, OmegaConfBaseException):
        return omegaconf_error(err)
    if isinstance(err, HydraException):
        return hydra_error_line(err)
    if isinstance(err, yaml.YAMLError):  # a config file (a preset, a saved run's) that is not plain YAML
        mark = getattr(err, "problem_mark", None)
        where = f"{mark.name}, line {mark.line + 1}: " if mark is not None else ""
        return f"{where}not plain YAML: {getattr(err, 'problem', None) or first_line(err)} (a config file holds " \
               f"settings: no tags, no duplicate keys)"
    if isinstance(err, OSError) and err.filename:
        key = key_of(err.filename, paths)
        where = f"{key}: " if key else ""
        return f"{where}cannot use {err.filename}: {err.strerror or first_line(err)}"
    if isinstance(err, USER_ERRORS):
        return f"{type(err).__name__}: {first_line(err)}"
    return f"unexpected {type(err).__name__}: {first_line(err)} (HYDRA_FULL_ERROR=1 shows the traceback)"


def exit_code(err: BaseException) -> int:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(err, KeyboardInterrupt):
        return 128 + getattr(err, "signum", signal.SIGINT)  # as the shell reports a process ended by the signal
    user_error = isinstance(err, (*USER_ERRORS, OmegaConfBaseException, HydraException, yaml.YAMLError)) or \
        _service_key(err)
    return 2 if user_error else 1


def _service_key(err: BaseException) -> str | None:
    return SERVICE_KEYS.get(type(err).__module__.partition(".")[0])


def _interrupted_line(err: KeyboardInterrupt, paths: dict[str, str]) -> str:
    text = first_line(err) if str(err).strip() else "interrupted"
    if not text.startswith("interrupted"):
        text = f"interrupted: {text}"  # a KeyboardInterrupt with a reason of its own (the sweep process is gone)
    run_dir = paths.get("paths.output_dir")
    return f"{text}; trainer.resume=true continues {run_dir} from its last checkpoint" if run_dir else text


def run_paths(cfg) -> dict[str, str]:
    """The paths of a run by config key, as far as they resolve."""
    paths = {}
    for key in ("output_dir", "ledger_file", "cache_dir", "data_dir"):
        # an unresolvable path is reported elsewhere; here it only names keys
        with contextlib.suppress(Exception):
            if value := cfg.paths.get(key):
                paths[f"paths.{key}"] = str(value)
    return paths


def _job_dirs(argv: list[str]) -> dict[str, str]:
    """{"hydra.run.dir": <dir>, ...} as the command line sets them: an OSError of Hydra making the job's dir (a file,
    read-only, a full disk) then names its key. Hydra has reset its own state by the time the error reaches us."""
    pairs = (argument.lstrip("+").partition("=") for argument in argv)
    return {key: value.strip("'\"") for key, _, value in pairs if key in ("hydra.run.dir", "hydra.sweep.dir") and value}
