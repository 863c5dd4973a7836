"""The trial loop of a study sweep: ask, launch a batch, tell, until n_trials trials of the study finished.

The upstream loop counts trials per invocation and numbers jobs from 0; this one counts the study's finished
trials (complete, pruned, or failed while running), so that a rerun resumes and several sweep processes on one
storage share the work. Trials that were running when their sweep died are queued again (heartbeats).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hydra.core.utils import JobReturn
from omegaconf import OmegaConf

from hydra_plugins.nlpexp_optuna_sweeper import upstream

if TYPE_CHECKING:
    from hydra_plugins.nlpexp_optuna_sweeper.sweeper import StudySweeper

log = logging.getLogger(__name__)
HYDRA_DEFAULT_SUBDIR = "${hydra.job.num}"


@dataclass
class Plan:
    """What a sweep command asks for, settled before the study is opened."""

    sweep_args: list[str]
    space: dict[str, Any]
    fixed: dict[str, Any]
    fixed_overrides: list[str]
    directions: list[str]
    metrics: list[str]
    n_trials: int
    grid: dict[str, list] | None
    promote_objective: int | None


class TrialLoop:
    def __init__(self, sweeper: StudySweeper, study, plan: Plan) -> None:
        self.sweeper = sweeper
        self.study = study
        self.plan = plan
        self.storage = sweeper.storage
        self.study_id = self.storage.get_study_id_from_name(study.study_name)
        raw_subdir = OmegaConf.to_container(sweeper.config.hydra.sweep, resolve=False).get("subdir")
        # Hydra's default subdir is the job number: make it the trial number, unique across reruns.
        self.subdir_is_trial_number = raw_subdir == HYDRA_DEFAULT_SUBDIR

    def finished(self) -> int:
        from nlpexp.sweep.study import counts_toward_n_trials

        return sum(map(counts_toward_n_trials, self.study.get_trials(deepcopy=False)))

    def run(self) -> None:
        from optuna.storages import fail_stale_trials
        from optuna.trial import TrialState

        from nlpexp.sweep.study import counts_toward_n_trials

        waiting_logged, stale_checked = False, -math.inf
        while True:
            if time.monotonic() - stale_checked >= self.sweeper.keys.heartbeat_interval:
                # (no trial goes stale faster: once a heartbeat interval is often enough)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # heartbeats are "experimental"
                    fail_stale_trials(self.study)
                stale_checked = time.monotonic()
            trials = self.study.get_trials(deepcopy=False)
            self._check_budget(trials)
            done = sum(map(counts_toward_n_trials, trials))
            if done >= self.plan.n_trials:
                from nlpexp.sweep.promote import check_some_finished

                if self.sweeper.keys.fail_without_result:  # none finished: exit 2
                    check_some_finished(self.study, self.sweeper.sweep_dir)
                return
            running = sum(t.state == TrialState.RUNNING for t in trials)
            room = min(self.plan.n_trials - done - running, self.sweeper.upstream.n_jobs)
            if room <= 0:
                # The last trials run elsewhere: wait until they finish, or go stale and are queued again.
                if not waiting_logged:
                    from nlpexp.sweep.storage import has_heartbeat

                    log.info("waiting for %d running trial(s) of other sweep processes%s", running, "" if
                             has_heartbeat(self.storage) else " (no heartbeat in this storage: a killed "
                             "process's trial stays RUNNING; see docs/scaling.md)")
                    waiting_logged = True
                time.sleep(self.sweeper.keys.heartbeat_interval)
                continue
            waiting_logged = False
            batch = self._claim(room, len(trials))
            if batch:
                self._run_batch(batch)

    def _claim(self, count: int, known: int) -> list:
        """Ask for `count` trials and keep those within n_trials (`known`: trials in the study when room was
        counted).

        Processes sharing the study may ask at the same moment; trial numbers order them, so a new trial is
        kept only when fewer than n_trials finished or running trials have a smaller number. When the asked
        trials are the next `count` numbers, nobody else asked in between and all are within n_trials.
        """
        from optuna.trial import TrialState

        from nlpexp.sweep.study import SKIPPED, counts_toward_n_trials, requeue, tell

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "heartbeat is supposed to be used with Study.optimize"
            asked = [self.study.ask() for _ in range(count)]
        if [t.number for t in asked] == list(range(known, known + count)):
            return asked
        claimed = sorted(t.number for t in self.study.get_trials(deepcopy=False)
                         if t.state == TrialState.RUNNING or counts_toward_n_trials(t))
        keep = [t for t in asked if claimed.index(t.number) < self.plan.n_trials]
        for trial in asked:
            if trial in keep:
                continue
            trial.set_user_attr(SKIPPED, "not run: other sweep processes took the last trials")
            if trial.params:  # a queued retry: queue it again
                requeue(self.study, self.storage, [trial.number])
            else:
                tell(self.study, trial, state=TrialState.FAIL)
        return keep

    def _run_batch(self, batch: list) -> None:
        from nlpexp.sweep.study import requeue

        plan, sweeper = self.plan, self.sweeper
        try:
            trial_overrides = upstream.configure_trials(sweeper.upstream, sweeper.config, batch, plan.space,
                                                        plan.fixed, plan.fixed_overrides)
            jobs = [[*overrides, *self._job_overrides(trial.number)]
                    for trial, overrides in zip(batch, trial_overrides, strict=True)]
            with self._heartbeats(batch):
                returns = sweeper.launcher.launch(jobs, initial_job_idx=batch[0].number)
        except BaseException:
            requeue(self.study, self.storage, [t.number for t in batch])
            raise
        failures = [self._tell(trial, job) for trial, job in zip(batch, returns, strict=True)]
        self._check_batch(returns, sum(failures))

    def _job_overrides(self, number: int) -> list[str]:
        """Where trial `number` runs and how it finds its study (see nlpexp.sweep)."""
        from nlpexp.sweep.study import trial_env

        env = trial_env(self.sweeper.storage_url, self.study.study_name, number)
        where = [f"hydra.sweep.dir={_quoted(str(self.sweeper.sweep_dir))}"]
        if self.subdir_is_trial_number:
            where.append(f"hydra.sweep.subdir={number}")
        return [*where, *(f"+hydra.job.env_set.{key}={_quoted(value)}" for key, value in env.items())]

    @contextmanager
    def _heartbeats(self, batch: list):
        from nlpexp.sweep.storage import has_heartbeat

        if not has_heartbeat(self.storage):  # a journal file: nobody would read the beats
            yield
            return
        ids = [self.storage.get_trial_id_from_study_id_trial_number(self.study_id, t.number) for t in batch]
        stop = threading.Event()

        def beat() -> None:
            while True:
                for tid in ids:
                    try:
                        self.storage.record_heartbeat(tid)
                    except Exception as err:  # a busy database: the next beat will do
                        log.warning("heartbeat of trial id %d not recorded: %s", tid, err)
                if stop.wait(self.sweeper.keys.heartbeat_interval):
                    return

        thread = threading.Thread(target=beat, name="study-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _tell(self, trial, job: JobReturn) -> bool:
        """Store the job's outcome in the trial; True when the trial failed."""
        import optuna
        from optuna.trial import TrialState

        from nlpexp.errors import first_line
        from nlpexp.sweep.study import RUN_DIR, record_failure, tell, trial_values

        if job.hydra_cfg is not None:  # where the job really ran (an app's own hydra.sweep.subdir)
            trial.set_user_attr(RUN_DIR, str(job.hydra_cfg.hydra.runtime.output_dir))
        error = upstream.job_error(job)
        if isinstance(error, optuna.TrialPruned):
            tell(self.study, trial, state=TrialState.PRUNED)  # optuna keeps the last reported value
            log.info("trial %d pruned", trial.number)
            return False
        if error is not None:
            record_failure(self.study, trial, f"{type(error).__name__}: {first_line(error)}")
            return True
        values, problem = trial_values(job.return_value, self.plan.metrics)
        if problem:
            record_failure(self.study, trial, problem)
            return True
        tell(self.study, trial, values=values)
        log.info("trial %d: %s", trial.number,
                 ", ".join(f"{name} = {value:.4g}" for name, value in zip(self.plan.metrics, values, strict=True)))
        return False

    def _check_batch(self, returns: list[JobReturn], failures: int) -> None:
        """The official max_failure_rate: more failures in a batch than that share re-raises the first error."""
        rate = self.sweeper.upstream.max_failure_rate
        if failures / len(returns) > rate:
            log.error("Failed %d times out of %d with max_failure_rate=%s.", failures, len(returns), rate)
            for job in returns:
                job.return_value  # noqa: B018 (raises a failed job's exception, with its traceback)

    def _check_budget(self, trials: list) -> None:
        """nlpexp's failure_budget: the study stops once more than that share of n_trials failed."""
        from nlpexp.errors import NlpexpError
        from nlpexp.sweep.study import ERROR, failed

        failures = failed(trials)
        budget = self.sweeper.keys.failure_budget
        if len(failures) > budget * self.plan.n_trials:
            last = failures[-1]
            raise NlpexpError(
                f"{len(failures)} of {self.plan.n_trials} trials failed (failure_budget={budget}); last, trial "
                f"{last.number}: {last.user_attrs[ERROR]}. Fix it and rerun, or raise hydra.sweeper.failure_budget "
                f"(failures: {self.sweeper.sweep_dir}/trials.md)")


def _quoted(value: str) -> str:
    """A Hydra override value that stays one string whatever characters it holds."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
