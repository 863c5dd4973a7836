"""Optuna studies behind `python run.py -m hparams_search=<preset>`: resumable, prunable, summarised.

Three layers, each importing only the one below: the Hydra sweeper (`hydra_plugins/nlpexp_optuna_sweeper`, where
Hydra finds plugins) turns its config into a Plan and its launcher into a `launch(trials)` callable; this package
runs the study (loop.py, with study.py, storage.py, summary.py, plots.py: Optuna, no Hydra); the trials
find it through their environment and report to it (reporter.py), through the plugin's hooks, which import nothing
of this package outside a sweep. This module: a trial in a worker process ends with its sweep.
"""

import contextlib
import gc
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time

log = logging.getLogger(__name__)
GRACE_S = 30  # at most this long after the interrupt for the run to record its end; then the worker ends
_WATCHER = "sweep-parent-watch"
_running = threading.Event()  # a run is in progress in this process (run_in_progress)
_orphaned = threading.Event()  # the sweep process that started this worker is gone
_swallowed = threading.Event()  # a finalizer dropped the interrupt


class SweepGone(KeyboardInterrupt):
    """The sweep process that started this worker is gone. Pickled without its attributes: the worker sends it to
    its dead parent at once (Hydra attaches the job's return to it, which holds it again: a long recursion)."""

    def __init__(self) -> None:
        super().__init__("the sweep process is gone")

    def __reduce__(self):
        return type(self), ()


@contextlib.contextmanager
def run_in_progress():
    """Around a run (nlpexp.pipeline): a worker whose sweep is gone lets the run record its end before it ends, and
    a SIGTERM (`kill` of the sweep's process group) ends a worker's run as run.py's: interrupted, recorded, its
    checkpoint whole. Only where SIGTERM has its default action: a trial in the sweep process has run.py's handler
    already, a SLURM job's is submitit's; outside a run, a worker ends at once, with nothing to record."""
    from nlpexp.boundary import stop_signals_raise

    default_term = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    if multiprocessing.parent_process() is not None:  # a worker process of a parallel sweep
        _progress_bars_lock_within_the_process()
    _running.set()
    try:
        with stop_signals_raise([signal.SIGTERM]) if default_term else contextlib.nullcontext():
            yield
    finally:
        _running.clear()


def _progress_bars_lock_within_the_process() -> None:
    """Before the run's first bar: tqdm's default lock holds a named semaphore in a spawned worker, which leaks when
    joblib kills its pool after an interrupted trial, and the resource tracker then warns about it on the console
    after the sweep's one error line. A worker's bars share no lock with other processes (tqdm's own set_lock)."""
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())


def end_with_parent() -> None:
    """In a worker process of a parallel sweep (joblib/loky): once the sweep process is gone, even killed with
    SIGKILL, interrupt the trial (SweepGone, a KeyboardInterrupt: its ledger says `interrupted`), then end the worker,
    rather than finish a trial that nobody waits for. A trial in the sweep process itself has no such parent.

    Called from the main thread. The watcher interrupts with SIGINT sent to the main thread (a signal also wakes a
    main thread blocked in a system call, which `_thread.interrupt_main` does not): the handler set here raises
    SweepGone for the watcher and leaves Ctrl-C to the handler before (a background sweep's workers ignore it).
    No os._exit: the worker ends by the exception, once its run has recorded its end."""
    parent = multiprocessing.parent_process()
    if parent is None or any(thread.name == _WATCHER for thread in threading.enumerate()):
        return
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, lambda signum, frame: _interrupt(before, signum, frame))
    threading.Thread(target=_watch, args=(parent.pid,), name=_WATCHER, daemon=True).start()


def _interrupt(before, signum, frame) -> None:
    from nlpexp.boundary import raise_interrupted

    if _orphaned.is_set():
        raise SweepGone
    if before is signal.default_int_handler:  # Ctrl-C: a stop as run.py's, which pickles to the sweep (Interrupted)
        raise_interrupted(signum, frame)  # at once, or once the checkpoint being written is whole
    elif callable(before):
        before(signum, frame)


def _watch(parent_pid: int) -> None:
    while os.getppid() == parent_pid:  # an orphan is adopted by another process
        time.sleep(1)
    log.error("the sweep process %d is gone: interrupting this trial", parent_pid)
    _interrupt_run()
    gc.freeze()  # the interpreter's last collection at exit would walk the whole heap (the model): seconds
    while True:  # then the worker's own loop: loky's worker ends on an exception while it waits for work
        time.sleep(1)
        _interrupt_main()


def _interrupt_run() -> None:
    """Interrupt the main thread and give a run in progress GRACE_S to record its end. An exception raised in a
    `__del__` (the garbage collector runs them, the trainer's gc.collect among others) is dropped: the interrupt
    is sent again."""
    _orphaned.set()
    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: (_swallowed.set() if isinstance(unraisable.exc_value, KeyboardInterrupt)
                                             else hook(unraisable))
    _interrupt_main()
    deadline = time.monotonic() + GRACE_S
    while _running.is_set() and time.monotonic() < deadline:
        if _swallowed.wait(0.2):
            _swallowed.clear()
            _interrupt_main()


def _interrupt_main() -> None:
    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
