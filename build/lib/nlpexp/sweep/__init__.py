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

`trial_callbacks(cfg)` (called by the pipeline) turns them into a trainer callback that reports the validation
metric at every evaluation and asks the pruner (`hydra.sweeper.pruner` of the trial's Hydra config)
whether to stop. Outside a sweep none of them is set and a run is untouched.
"""

import os

ENV_STORAGE = "NLPEXP_STUDY_STORAGE"
ENV_STUDY = "NLPEXP_STUDY_NAME"
ENV_TRIAL = "NLPEXP_TRIAL_NUMBER"


def trial_callbacks(cfg) -> list:
    """The trainer callbacks of a sweep trial ([TrialReporter]); [] outside a sweep, without importing optuna."""
    if ENV_TRIAL not in os.environ:
        return []
    from nlpexp.sweep.reporter import trial_reporters

    return trial_reporters(cfg)
