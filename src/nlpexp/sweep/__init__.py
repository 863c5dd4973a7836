"""Optuna studies behind `python run.py -m hparams_search=<preset>`.

The sweeper (`hydra_plugins/nlpexp_optuna_sweeper`, Hydra finds plugins only there) extends Hydra's Optuna
sweeper: the study lives in an RDB storage and is resumed by rerunning the command, trials can be pruned,
failures are recorded, and the sweep dir gets a summary. This package holds the parts a trial, the
summary command and the tests use as well.

How a trial finds its study: the sweeper starts every trial with three environment variables, set
through `hydra.job.env_set` so that every launcher carries them (in-process, joblib workers, SLURM jobs):

    NLPEXP_STUDY_STORAGE   the storage URL (sqlite:///<sweep dir>/optuna.db by default)
    NLPEXP_STUDY_NAME      the study name
    NLPEXP_TRIAL_NUMBER    the trial's number in the study

`trial_callbacks(cfg)` (called by the pipeline) makes a trial in a worker process end with its sweep
(`end_with_parent`), and turns them into a trainer callback that reports the validation
metric at every evaluation and asks the pruner (`hydra.sweeper.pruner` of the trial's Hydra config)
whether to stop. Outside a sweep none of them is set and a run is untouched.
"""

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time

log = logging.getLogger(__name__)

ENV_STORAGE = "NLPEXP_STUDY_STORAGE"
ENV_STUDY = "NLPEXP_STUDY_NAME"
ENV_TRIAL = "NLPEXP_TRIAL_NUMBER"


def trial_callbacks(cfg) -> list:
    """The trainer callbacks of a sweep trial ([TrialReporter]); [] outside a sweep, without importing optuna."""
    if ENV_TRIAL not in os.environ:
        return []
    from nlpexp.sweep.reporter import trial_reporters

    end_with_parent()
    return trial_reporters(cfg)


def check_trial_owned() -> None:
    """Outside a sweep nothing; in a trial, refuse to finish one that the study has already ended (its sweep
    was killed, and the trial failed and queued again): its result would contradict the study."""
    if ENV_TRIAL in os.environ:
        from nlpexp.sweep.reporter import check_trial_running

        check_trial_running()


_watched_parent: int | None = None
GRACE_S = 30  # at most this long after the interrupt for the trial to record its end; then the worker ends


def end_with_parent() -> None:
    """In a worker process of a parallel sweep (joblib/loky): once the sweep process is gone, even killed with
    SIGKILL, interrupt this trial (its ledger line says `interrupted`) and end the worker, rather than finish
    a trial that nobody waits for. A trial running in the sweep process itself has no such parent.

    Called from the main thread. loky workers ignore SIGINT (Ctrl-C is the sweep process's to handle), so the
    interrupt comes as SIGUSR2, whose handler raises KeyboardInterrupt in the main thread."""
    global _watched_parent
    parent = multiprocessing.parent_process()
    if parent is None or _watched_parent == parent.pid:
        return
    _watched_parent = parent.pid
    if signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL:
        signal.signal(signal.SIGUSR2, _interrupt)
    threading.Thread(target=_watch, args=(parent.pid,), name="sweep-parent-watch", daemon=True).start()


def _interrupt(signum, frame):
    if _in_a_finalizer(frame):  # raised there, it would be printed as "Exception ignored" and lost: a bit later
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR2)).start()
        return
    raise KeyboardInterrupt("the sweep process is gone")


def _in_a_finalizer(frame) -> bool:
    """Whether the main thread is inside a `__del__` (run by the garbage collector, e.g. during the trainer's
    gc.collect), where Python drops any exception."""
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _watch(parent_pid: int) -> None:
    while os.getppid() == parent_pid:  # an orphan is adopted by another process
        time.sleep(1)
    log.error("the sweep process %d is gone: interrupting this trial", parent_pid)
    os.kill(os.getpid(), signal.SIGUSR2)
    deadline = time.monotonic() + GRACE_S
    while _in_a_trial() and time.monotonic() < deadline:  # recording the trial's end
        time.sleep(0.2)
    os._exit(1)


def _in_a_trial() -> bool:
    """Whether the main thread is still inside nlpexp.pipeline (the trial), rather than back in the worker loop."""
    frame = sys._current_frames().get(threading.main_thread().ident)
    while frame is not None:
        if frame.f_globals.get("__name__") == "nlpexp.pipeline":
            return True
        frame = frame.f_back
    return False
