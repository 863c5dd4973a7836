"""The `study` sweeper: Hydra's Optuna sweeper (through its own code, upstream.py) with a persistent study (config.py):
stored and resumed until `n_trials` trials have finished, whoever ran them; a stable name and dir; heartbeats; a
pruner; a failure budget; a summary; promotion. This module is the Hydra side: a Plan and a `launch(trials)`
callable, with which nlpexp.sweep.loop runs the study.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import re
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydra_plugins.nlpexp_optuna_sweeper import trial_env, upstream
from nlpexp import NlpexpError

log = logging.getLogger(__name__)
# Launchers whose launch() may run again while one runs: each trial goes to a free worker of a pool the calls share
# (joblib's loky executor; the multiprocessing backend makes a pool per call), so the loop keeps every worker busy
# instead of waiting for a batch. Any other launcher gets batches of n_jobs, as in the official sweeper.
OVERLAPPING_LAUNCHERS = ("hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",)
LEAST = {"n_trials": 1, "n_jobs": 1, "heartbeat_interval": 1, "grace_period": 1, "max_retry": 0, "failure_budget": 0}


class StudySweeper(Sweeper):
    def __init__(self, *, sampler: DictConfig, pruner: DictConfig, **keys: Any) -> None:
        self.upstream = upstream.make_impl(**{key: keys.pop(key) for key in upstream.KEYS})
        self.sampler_config, self.pruner_config = sampler, pruner
        self.keys = SimpleNamespace(**keys)  # metric_names, failure_budget, heartbeats...: config.py

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def sweep(self, arguments: list[str]) -> None:
        try:
            self._sweep(arguments)
        except NlpexpError as err:
            log.error("error: %s", err)
            sys.exit(2)

    def _sweep(self, arguments: list[str]) -> None:
        from nlpexp.sweep import study as studies  # (optuna: once a sweep runs, not at every Hydra start-up)
        from nlpexp.sweep.loop import Plan, TrialLoop
        from nlpexp.sweep.storage import check_storage_url, open_storage, sqlite_url

        impl, keys = self.upstream, self.keys
        sweep_args, space, fixed, deletions = upstream.search_space(impl, arguments)
        self._check(space)
        check_storage_url(impl.storage)
        grid = None
        if self.sampler_config._target_.endswith("GridSampler"):
            grid = {name: upstream.grid_choices(distribution) for name, distribution in space.items()}
        directions = upstream.directions(impl)
        metrics, promote = studies.objectives(keys.metric_names, directions, keys.promote_best, keys.promote_objective)
        n_trials = impl.n_trials if grid is None else min(impl.n_trials, math.prod(map(len, grid.values())))
        definition = studies.definition(sweep_args, directions, metrics, self.sampler_config, self.pruner_config)
        name, sweep_dir = self._study_dir(definition)
        url = impl.storage or sqlite_url(sweep_dir)
        storage = open_storage(url, keys.heartbeat_interval, keys.grace_period, keys.max_retry)
        pruner = instantiate(self.pruner_config, _execution_whitelist_=("optuna.pruners.*",))
        study = studies.open_study(storage, name, definition, url, pruner, sys.argv[0], deletions)
        seed, joined = studies.sampler_seed(storage, study, self.sampler_config)
        if seed != self.sampler_config.get("seed"):
            log.info("sampler seed %s (%s)", seed, joined)
        sampler = instantiate(self.sampler_config, **({"seed": seed} if "seed" in self.sampler_config else {}),
                              _execution_whitelist_=upstream.SAMPLER_WHITELIST)
        study.sampler = sampler(grid) if grid is not None else sampler
        studies.write_study_file(sweep_dir, name, url)
        # The launcher is made now: its settings may name the study's dir (submitit's folder, <dir>/.submitit).
        launcher = Plugins.instance().instantiate_launcher(config=self.config, hydra_context=self.hydra_context,
                                                           task_function=self.task_function)
        overlapping = f"{type(launcher).__module__}.{type(launcher).__qualname__}" in OVERLAPPING_LAUNCHERS
        plan = Plan(directions, metrics, n_trials, impl.n_jobs, overlapping, impl.max_failure_rate,
                    keys.failure_budget, keys.fail_without_result, keys.heartbeat_interval, promote, keys.registry_dir,
                    keys.plots)
        launch = partial(self._launch, launcher, url, name, sweep_dir, space, fixed, deletions)
        with library_warnings_once("submitit"):  # SLURM accounting polls: each distinct warning once
            TrialLoop(study, storage, plan, launch, sweep_dir, url).run()

    def _check(self, space: dict) -> None:
        """What Hydra's types leave open, and a search-space key the config lacks: once, here, not in every trial."""
        counts = {**vars(self.keys), "n_trials": self.upstream.n_trials, "n_jobs": self.upstream.n_jobs}
        for key, least in LEAST.items():
            if counts[key] is not None and counts[key] < least:
                raise NlpexpError(f"hydra.sweeper.{key} must be >= {least}, got {counts[key]}")
        absent = object()
        missing = [key for key in space if key[0] not in "+~" and not any(c in key for c in "@/")
                   and OmegaConf.select(self.config, key, default=absent) is absent]
        if missing:
            raise NlpexpError(f"search space key(s) not in the config: {', '.join(missing)} "
                              f"(a typo? to add a new key write +{missing[0]}=...)")

    def _study_dir(self, definition: dict) -> tuple[str, Path]:
        """The study's name and dir, written into the sweep config so that optimization_results.yaml and the jobs
        use it: hydra.sweep.dir as configured anywhere, or <studies_dir>/<study> unless given on the command line."""
        from nlpexp.sweep.study import default_study_name  # (security: the storage is part of a study's identity)

        hydra, studies_dir = self.config.hydra, self.keys.studies_dir
        own_dir = studies_dir is None or any(o.lstrip("+~").split("=", 1)[0] == "hydra.sweep.dir"
                                             for o in hydra.overrides.hydra)
        name = self.upstream.study_name or default_study_name(
            hydra.runtime.choices.get("hparams_search") or "sweep", definition, self.upstream.storage,
            hydra.sweep.dir if own_dir else None, studies_dir)
        sweep_dir = Path(hydra.sweep.dir if own_dir else Path(studies_dir) / name).resolve()
        with read_write(hydra), open_dict(hydra):
            hydra.sweep.dir = str(sweep_dir)  # (hydra.sweeper must stay as composed: Hydra compares it per job)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        return name, sweep_dir

    def _launch(self, launcher, url: str, name: str, sweep_dir: Path, space: dict, fixed: dict, deletions: list[str],
                batch: list) -> list:
        """Trials as Hydra jobs, each with its params, its dir and how it finds its study; returns their Outcomes."""
        from nlpexp.sweep.loop import Outcome

        # Hydra's default subdir, the job number, becomes the trial number: unique across reruns.
        own_subdir = OmegaConf.to_container(self.config.hydra.sweep, resolve=False).get("subdir") == "${hydra.job.num}"
        jobs = []
        for trial, overrides in zip(batch, upstream.configure_trials(self.upstream, self.config, batch, space, fixed,
                                                                     deletions), strict=True):
            env = trial_env(url, name, trial.number)
            jobs.append([*overrides, f"hydra.sweep.dir={_quoted(str(sweep_dir))}",
                         *([f"hydra.sweep.subdir={trial.number}"] if own_subdir else []),
                         *(f"+hydra.job.env_set.{key}={_quoted(value)}" for key, value in env.items())])
        try:
            returns = launcher.launch(jobs, initial_job_idx=batch[0].number)
        except Exception as err:
            if (killed := _worker_killed(err)) is not None:
                raise killed from err
            raise
        return [Outcome(*upstream.job_outcome(job)) for job in returns]


def _worker_killed(err: Exception) -> NlpexpError | None:
    """A parallel sweep's worker killed mid-trial (the kernel's OOM killer, most often) as one line that says what
    to change; joblib then ends the other workers too, and the trials under way are queued again (nlpexp.sweep.loop)."""
    if type(err).__name__ != "TerminatedWorkerError":  # joblib's (loky's), without importing joblib for others
        return None
    codes = re.search(r"exit codes of the workers are (\{.*?\})", str(err))
    return NlpexpError(f"a worker process of hydra/launcher=parallel was killed mid-trial (exit code "
                       f"{codes[1] if codes else 'unknown'}; out of memory?): its trials are queued again; rerun the "
                       "same command to resume, with fewer trials at once (hydra.launcher.n_jobs) or smaller batches "
                       "(trainer.batch_size) if memory ran out")


@contextlib.contextmanager
def library_warnings_once(name: str) -> Iterator[None]:
    """Within the block, logger `name` sends each distinct warning once, through the root logger's handlers only:
    submitit logs each failed poll of SLURM's accounting every few seconds (`Call #N - Bypassing sacct error ...`)
    on its own stdout and stderr handlers and again through the root logger."""
    with contextlib.suppress(ImportError):  # first: the package adds its handlers when imported (submitit does)
        importlib.import_module(name)
    logger, seen = logging.getLogger(name), set()
    handlers, propagate = list(logger.handlers), logger.propagate

    def once(record: logging.LogRecord) -> bool:  # a warning (or worse) the first time its text is seen
        key = (record.levelno, re.sub(r"^Call #\d+ - ", "", record.getMessage()))
        new = record.levelno < logging.WARNING or key not in seen
        seen.add(key)
        return new

    logger.handlers, logger.propagate = [], True
    logger.addFilter(once)
    try:
        yield
    finally:
        logger.removeFilter(once)
        logger.handlers, logger.propagate = handlers, propagate


def _quoted(value: str) -> str:
    """A Hydra override value that stays one string whatever characters it holds."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
