"""nlpexp's Optuna sweeper: the Hydra Optuna sweeper made resumable, prunable and summarised (sweeper.py); the
study itself is run by `nlpexp.sweep`. Hydra finds plugins only under `hydra_plugins`, and imports them at start-up.

Here too, how a trial finds its study: the sweeper starts every trial with three environment variables, set
through `hydra.job.env_set` so that every launcher carries them (in-process, joblib workers, SLURM jobs). A run
calls the three hooks below; outside a sweep none of the variables is set, and a run imports no sweep code.
"""

import contextlib
import os

ENV_STORAGE = "NLPEXP_STUDY_STORAGE"  # the storage URL (sqlite:///<sweep dir>/optuna.db by default)
ENV_STUDY = "NLPEXP_STUDY_NAME"
ENV_TRIAL = "NLPEXP_TRIAL_NUMBER"  # the trial's number in the study


def trial_env(storage_url: str, study_name: str, number: int) -> dict[str, str]:
    return {ENV_STORAGE: storage_url, ENV_STUDY: study_name, ENV_TRIAL: str(number)}


def _sweep_trial() -> tuple[str, str, int] | None:
    """(storage URL, study name, number) of the sweep trial this run is; None outside a sweep."""
    if ENV_TRIAL not in os.environ:
        return None
    return os.environ[ENV_STORAGE], os.environ[ENV_STUDY], int(os.environ[ENV_TRIAL])


def trial_callbacks(cfg) -> list:
    """The trainer callbacks of a sweep trial: [TrialReporter] (nlpexp.sweep.reporter), which reports the validation
    metric at every evaluation and asks the pruner whether to stop; [] outside a sweep. A trial in a worker process
    also ends with its sweep (nlpexp.sweep.end_with_parent)."""
    if (trial := _sweep_trial()) is None:
        return []
    from nlpexp.sweep import end_with_parent
    from nlpexp.sweep.reporter import trial_reporters

    end_with_parent()
    return trial_reporters(cfg, *trial)


def check_trial_owned() -> None:
    """In a trial, refuse to finish one that the study has already ended (its sweep was killed, and the trial
    failed and queued again): its result would contradict the study."""
    if (trial := _sweep_trial()) is not None:
        from nlpexp.sweep.reporter import check_trial_running, open_trial

        check_trial_running(open_trial(*trial))


@contextlib.contextmanager
def run_in_progress():
    """Around a run (nlpexp.pipeline): a sweep worker whose sweep is gone lets the run record its end."""
    if ENV_TRIAL not in os.environ:
        yield
        return
    from nlpexp.sweep import run_in_progress

    with run_in_progress():
        yield
