"""The `study` sweeper: Hydra's Optuna sweeper with a persistent, resumable, prunable study.

It extends OptunaSweeper and reuses what that one does well: search-space parsing (`interval`, `tag(log, ...)`,
`choice`, ranges), the sampler configs, the trial -> overrides mapping and the launcher. The trial loop is
its own, because the upstream loop counts trials per invocation and numbers jobs from 0:

- the study lives in an RDB storage (sqlite in the sweep dir unless `storage` names one); rerunning the
  command loads it and runs trials until `n_trials` of them have finished (complete, pruned or failed),
  whatever ran before and whoever ran it: several sweep processes on one storage share the work;
- the study has a stable name (`<hparams_search>-<hash of its definition>` unless `study_name` is set) and
  a stable dir (`<studies_dir>/<study>` unless hydra.sweep.dir is given); trial N runs in `<dir>/N`, so
  job dirs never collide across reruns or processes;
- a sweep process records a heartbeat for its running trials; a trial whose sweep died (kill -9, a lost
  node) goes stale after `grace_period` s and is queued again with the same params (Ctrl-C does it at once);
- trials learn their study through environment variables (see nlpexp.sweep) and report to it, so a
  `pruner` can stop them; a pruned trial is stored PRUNED with its last value;
- a failed or NaN trial is stored FAIL with its error line; the sweep stops once more than
  `max_failure_rate * n_trials` trials failed;
- at the end the sweep dir gets its summary and the best model is registered as `registry:<study>`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)
SAMPLER_WHITELIST = ("hydra_plugins.hydra_optuna_sweeper.*", "optuna.samplers.*")


class StudySweeper(OptunaSweeper):
    def __init__(self, *, pruner: DictConfig, heartbeat_interval: int, grace_period: int, max_retry: int | None,
                 studies_dir: str, promote_best: bool, registry_dir: str | None, **optuna_args: Any) -> None:
        super().__init__(**optuna_args)
        self.sampler_config = optuna_args["sampler"]
        self.pruner_config = pruner
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.max_retry = max_retry
        self.studies_dir = Path(studies_dir)
        self.promote_best = promote_best
        self.registry_dir = Path(registry_dir) if registry_dir else None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.config = config

    def sweep(self, arguments: list[str]) -> None:
        from nlpexp.errors import NlpexpError

        try:
            self._sweep(arguments)
        except NlpexpError as err:
            log.error("error: %s", err)
            sys.exit(2)

    # --- the study -------------------------------------------------------------------------------------

    def _sweep(self, arguments: list[str]) -> None:
        from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

        from nlpexp.errors import NlpexpError
        from nlpexp.sweep import study as studies

        upstream = self.sweeper
        upstream._process_searchspace_config()
        sweep_args = [*upstream._parse_sweeper_params_config(), *arguments]
        space, fixed, fixed_overrides = create_params_from_overrides(sweep_args)
        for name in fixed:
            space.pop(name, None)
        directions = upstream._get_directions()
        if len(directions) != 1:
            raise NlpexpError(f"hydra.sweeper.direction must be one direction (run.py returns one value), "
                              f"got {directions}")
        if upstream.n_jobs < 1:
            raise NlpexpError(f"hydra.sweeper.n_jobs must be >= 1 (trials run at once), got {upstream.n_jobs}")
        self._check_space(space)
        self.grid = self._grid_space(space)
        self.n_trials = upstream.n_trials
        if self.grid is not None:
            self.n_trials = min(self.n_trials, math.prod(len(choices) for choices in self.grid.values()))

        study = self._open_study(self._definition(sweep_args, directions[0]))
        finished = sum(map(studies.counts_toward_n_trials, study.get_trials(deepcopy=False)))
        log.info("study %s: %d of %d trials finished; dir %s, storage %s", self.study_name, finished,
                 self.n_trials, self.sweep_dir, self.storage_url)
        try:
            self._run_trials(study, space, fixed, fixed_overrides)
        except BaseException:
            self._finish(study, raising=True)
            raise
        self._finish(study)

    def _check_space(self, space: dict) -> None:
        """A search-space key the config lacks fails once, here, rather than in every trial."""
        from nlpexp.errors import NlpexpError

        absent = object()
        missing = [key for key in space if key[0] not in "+~" and not any(c in key for c in "@/")
                   and OmegaConf.select(self.config, key, default=absent) is absent]
        if missing:
            raise NlpexpError(f"search space key(s) not in the config: {', '.join(missing)} "
                              f"(a typo? to add a new key write +{missing[0]}=...)")

    def _open_study(self, definition: dict):
        """Create the study, or load it when this command ran before; its dir and storage are settled here."""
        import optuna

        from nlpexp.config import instantiate
        from nlpexp.sweep import study as studies

        self.study_name = self.sweeper.study_name or self._default_name(definition)
        self.sweep_dir = self._pin_sweep_dir(self.study_name)
        self.storage_url = self.sweeper.storage or studies.sqlite_url(self.sweep_dir)
        self.storage = studies.open_storage(self.storage_url, self.heartbeat_interval, self.grace_period,
                                            self.max_retry)
        study = optuna.create_study(study_name=self.study_name, storage=self.storage,
                                    direction=definition["direction"], sampler=self._sampler(offset=0),
                                    pruner=instantiate(self.pruner_config), load_if_exists=True)
        self._check_definition(study, definition)
        studies.write_study_file(self.sweep_dir, self.study_name, self.storage_url)
        return study

    def _definition(self, sweep_args: list[str], direction: str) -> dict:
        """What makes a study: its overrides and search space, direction, sampler and pruner (not n_trials)."""
        return {"arguments": sorted(sweep_args), "direction": direction, "metric": self.config.optimized_metric,
                "sampler": OmegaConf.to_container(self.sampler_config, resolve=True),
                "pruner": OmegaConf.to_container(self.pruner_config, resolve=True)}

    def _default_name(self, definition: dict) -> str:
        preset = self.config.hydra.runtime.choices.get("hparams_search") or "sweep"
        digest = hashlib.sha1(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:8]
        return f"{preset}-{digest}"

    def _check_definition(self, study, definition: dict) -> None:
        from nlpexp.errors import NlpexpError
        from nlpexp.sweep.study import DEFINITION, METRIC

        direction = definition["direction"]
        if study.direction.name.lower() != direction:
            raise NlpexpError(f"study '{study.study_name}' in {self.storage_url} is {study.direction.name.lower()}d, "
                              f"not {direction}d; name another with hydra.sweeper.study_name=<name>")
        stored = study.user_attrs.get(DEFINITION)
        if stored is None:
            study.set_user_attr(DEFINITION, definition)
            study.set_user_attr(METRIC, definition["metric"])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "experimental"
                study.set_metric_names([definition["metric"]])  # names the value in plots and the dashboard
        elif stored != definition:
            changed = ", ".join(key for key in definition if stored.get(key) != definition[key])
            raise NlpexpError(f"study '{study.study_name}' in {self.storage_url} was started with other settings "
                              f"({changed}); rerun its command to resume it, or name a new study with "
                              f"hydra.sweeper.study_name=<name>")

    def _pin_sweep_dir(self, study_name: str) -> Path:
        """The study's dir, written into the sweep config so that the launcher and every job use it."""
        hydra_cfg = self.config.hydra
        given = any(o.lstrip("+~").split("=", 1)[0] == "hydra.sweep.dir" for o in hydra_cfg.overrides.hydra)
        sweep_dir = Path(hydra_cfg.sweep.dir if given else self.studies_dir / study_name).resolve()
        with read_write(hydra_cfg), open_dict(hydra_cfg):
            hydra_cfg.sweep.dir = str(sweep_dir)  # (hydra.sweeper must stay as composed: Hydra compares it per job)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        return sweep_dir

    def _grid_space(self, space: dict) -> dict | None:
        """GridSampler's search space when the sampler is the grid one, else None."""
        if not self.sampler_config._target_.endswith("GridSampler"):
            return None
        return {name: self.sweeper._to_grid_sampler_choices(dist) for name, dist in space.items()}

    def _sampler(self, offset: int):
        """The configured sampler; a seeded one is seeded with seed + offset (the first trial number of a
        batch), so that a resumed or second sweep process does not draw the first one's params again. (Not
        the grid sampler: its seed orders the grid, which must stay the same; it never repeats a point.)"""
        from hydra.utils import instantiate

        seed = self.sampler_config.get("seed")
        kwargs = {"seed": seed + offset} if seed is not None and self.grid is None else {}
        sampler = instantiate(self.sampler_config, **kwargs, _execution_whitelist_=SAMPLER_WHITELIST)
        return sampler(self.grid) if self.grid is not None else sampler

    # --- the trials ------------------------------------------------------------------------------------

    def _run_trials(self, study, space: dict, fixed: dict, fixed_overrides: list[str]) -> None:
        from optuna.storages import fail_stale_trials
        from optuna.trial import TrialState

        from nlpexp.sweep.study import counts_toward_n_trials

        waiting_logged = False
        while True:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # heartbeats are "experimental"
                fail_stale_trials(study)
            trials = study.get_trials(deepcopy=False)
            self._check_failures(trials)
            done = sum(map(counts_toward_n_trials, trials))
            if done >= self.n_trials:
                return
            running = sum(t.state == TrialState.RUNNING for t in trials)
            room = min(self.n_trials - done - running, self.sweeper.n_jobs)
            if room <= 0:
                # The last trials run elsewhere: wait until they finish, or go stale and are queued again.
                if not waiting_logged:
                    log.info("waiting for %d running trial(s) of other sweep processes", running)
                    waiting_logged = True
                time.sleep(self.heartbeat_interval)
                continue
            waiting_logged = False
            batch = self._claim(study, room)
            if batch:
                study.sampler = self._sampler(offset=batch[0].number)  # params are drawn from here on
                self._run_batch(study, batch, space, fixed, fixed_overrides)

    def _claim(self, study, count: int) -> list:
        """Ask for `count` trials and keep those within n_trials.

        Processes sharing the study may ask at the same moment; trial numbers order them, so a new trial is
        kept only when fewer than n_trials finished or running trials have a smaller number.
        """
        from optuna.trial import TrialState

        from nlpexp.sweep.study import SKIPPED, counts_toward_n_trials, requeue, tell

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "heartbeat is supposed to be used with Study.optimize"
            asked = [study.ask() for _ in range(count)]
        claimed = sorted(t.number for t in study.get_trials(deepcopy=False)
                         if t.state == TrialState.RUNNING or counts_toward_n_trials(t))
        keep = [t for t in asked if claimed.index(t.number) < self.n_trials]
        for trial in asked:
            if trial in keep:
                continue
            trial.set_user_attr(SKIPPED, "not run: other sweep processes took the last trials")
            if trial.params:  # a queued retry: queue it again
                requeue(study, self.storage, [trial.number])
            else:
                tell(study, trial, state=TrialState.FAIL)
        return keep

    def _run_batch(self, study, batch: list, space: dict, fixed: dict, fixed_overrides: list[str]) -> None:
        from nlpexp.sweep.study import RUN_DIR, requeue

        try:
            trial_overrides = self.sweeper._configure_trials(batch, space, fixed, fixed_overrides)
            jobs = []
            for trial, overrides in zip(batch, trial_overrides, strict=True):
                trial.set_user_attr(RUN_DIR, str(self.sweep_dir / str(trial.number)))
                jobs.append([*overrides, *self._job_overrides(trial.number)])
            with self._heartbeats(study, batch):
                returns = self.sweeper.launcher.launch(jobs, initial_job_idx=batch[0].number)
        except BaseException:
            requeue(study, self.storage, [t.number for t in batch])
            raise
        for trial, job in zip(batch, returns, strict=True):
            self._tell(study, trial, job)

    def _job_overrides(self, number: int) -> list[str]:
        """Where trial `number` runs and how it finds its study (see nlpexp.sweep)."""
        from nlpexp.sweep.study import trial_env

        env = trial_env(self.storage_url, self.study_name, number)
        return [f"hydra.sweep.dir={_quoted(str(self.sweep_dir))}", f"hydra.sweep.subdir={number}",
                *(f"+hydra.job.env_set.{key}={_quoted(value)}" for key, value in env.items())]

    @contextmanager
    def _heartbeats(self, study, batch: list):
        from nlpexp.sweep.study import trial_id

        ids = [trial_id(self.storage, study.study_name, t.number) for t in batch]
        stop = threading.Event()

        def beat() -> None:
            while True:
                for tid in ids:
                    try:
                        self.storage.record_heartbeat(tid)
                    except Exception as err:  # a busy database: the next beat will do
                        log.warning("heartbeat of trial id %d not recorded: %s", tid, err)
                if stop.wait(self.heartbeat_interval):
                    return

        thread = threading.Thread(target=beat, name="study-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _tell(self, study, trial, job: JobReturn) -> None:
        import optuna
        from optuna.trial import TrialState

        from nlpexp.errors import first_line
        from nlpexp.sweep.study import record_failure, tell, value_error

        metric = self.config.optimized_metric
        if job.status is not JobStatus.COMPLETED:
            error = job._return_value  # the public return_value re-raises it and prints "Error executing job"
            if isinstance(error, optuna.TrialPruned):
                tell(study, trial, state=TrialState.PRUNED)  # optuna keeps the last reported value
                log.info("trial %d pruned", trial.number)
            else:
                record_failure(study, trial, f"{type(error).__name__}: {first_line(error)}")
            return
        if error := value_error(job.return_value, metric):
            record_failure(study, trial, error)
            return
        tell(study, trial, values=[float(job.return_value)])
        log.info("trial %d: %s = %.4f", trial.number, metric, job.return_value)

    def _check_failures(self, trials: list) -> None:
        from nlpexp.errors import NlpexpError
        from nlpexp.sweep.study import ERROR, failed

        failures = failed(trials)
        if len(failures) > self.sweeper.max_failure_rate * self.n_trials:
            last = failures[-1]
            raise NlpexpError(
                f"{len(failures)} of {self.n_trials} trials failed (max_failure_rate="
                f"{self.sweeper.max_failure_rate}); last, trial {last.number}: {last.user_attrs[ERROR]}. "
                f"Fix it and rerun, or raise hydra.sweeper.max_failure_rate (failures: {self.sweep_dir}/trials.md)")

    # --- the end ---------------------------------------------------------------------------------------

    def _finish(self, study, raising: bool = False) -> None:
        """Summary into the sweep dir, best model into the registry; after an error, without hiding it."""
        from nlpexp.sweep.promote import promote_best
        from nlpexp.sweep.summary import write_summary

        try:
            summary = write_summary(study, self.sweep_dir)
            if self.promote_best:
                promote_best(study, self.registry_dir)
        except Exception:
            if not raising:
                raise
            log.exception("the sweep summary could not be written")
            return
        log.info("%s", summary)


def _quoted(value: str) -> str:
    """A Hydra override value that stays one string whatever characters it holds."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
