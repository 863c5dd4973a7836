"""How a trial finds its study: the sweeper starts every trial with three environment variables, set through
`hydra.job.env_set` so that every launcher carries them (in-process, joblib workers, SLURM jobs). Outside a sweep
none of them is set and a run is untouched."""

ENV_STORAGE = "NLPEXP_STUDY_STORAGE"  # the storage URL (sqlite:///<sweep dir>/optuna.db by default)
ENV_STUDY = "NLPEXP_STUDY_NAME"
ENV_TRIAL = "NLPEXP_TRIAL_NUMBER"  # the trial's number in the study


def trial_env(storage_url: str, study_name: str, number: int) -> dict[str, str]:
    return {ENV_STORAGE: storage_url, ENV_STUDY: study_name, ENV_TRIAL: str(number)}
