"""The trial loop of a study: ask, launch a batch, tell, until n_trials trials of the study have finished.
With a launcher that runs trials in a shared pool of worker processes (Plan.overlapping), each of n_jobs lanes
launches one trial and takes the next as soon as it is free: a pruned trial's worker does not wait for its batch.

Unlike the official sweeper (trials counted per invocation), it counts the study's finished trials, so that a rerun
resumes and several sweep processes on one storage share the work; a dead sweep's running trials are queued again
(heartbeats). The sweeper hands it a Plan and a `launch(trials) -> [Outcome]` callable: it knows nothing of Hydra.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import optuna
from optuna.storages import BaseStorage, fail_stale_trials
from optuna.trial import TrialState

from nlpexp import NlpexpError, first_line
from nlpexp.adapters import has_heartbeat, tell
from nlpexp.sweep.study import (
    ERROR,
    RUN_DIR,
    SKIPPED,
    counts_toward_n_trials,
    failed,
    requeue,
    trial_id,
    trial_values,
)

log = logging.getLogger(__name__)


@dataclass
class Plan:
    """What a sweep asks for, settled before its study is opened (the keys are hydra.sweeper's)."""

    directions: list[str]
    metrics: list[str]  # the objectives' names, in the directions' order
    n_trials: int  # finished trials the study must have (a grid's points at most)
    n_jobs: int  # trials launched at once
    overlapping: bool  # the launcher may be called again while a launch runs: n_jobs lanes of one trial each
    max_failure_rate: float  # the official per-batch rule: more failures in a batch re-raise the first error
    failure_budget: float  # the study stops once more than failure_budget * n_trials trials failed
    fail_without_result: bool  # a sweep none of whose trials finished fails
    heartbeat_interval: int
    promote_objective: int | None  # the objective that picks the model to promote; None: no promotion
    registry_dir: str | None  # where the best model is promoted (None: the registry's own)
    plots: bool  # summary plots at the end


class Outcome(NamedTuple):
    """A launched trial's end: what its run returned or the error it raised (a prune: optuna.TrialPruned)."""

    value: Any
    error: BaseException | None
    run_dir: str | None  # where it ran


class TrialLoop:
    def __init__(self, study: optuna.Study, storage: BaseStorage, plan: Plan,
                 launch: Callable[[list[optuna.Trial]], list[Outcome]], sweep_dir: Path, url: str = "") -> None:
        self.study, self.storage, self.plan, self.launch, self.sweep_dir = study, storage, plan, launch, sweep_dir
        self.where = "" if str(sweep_dir) in url else f", storage {url}"  # for the log: a storage of its own

    def run(self) -> None:
        """Run trials until the study has n_trials; then, or after an error, its summary (_finish)."""
        done = sum(map(counts_toward_n_trials, self.study.get_trials(deepcopy=False)))
        log.info("study %s: %d of %d trials finished; dir %s%s", self.study.study_name, done, self.plan.n_trials,
                 self.sweep_dir, self.where)
        try:
            self._run()
        except BaseException:
            self._finish(raising=True)
            raise
        self._finish()

    def _run(self) -> None:
        if not self.plan.overlapping or self.plan.n_jobs == 1:
            self._loop(None)
            return
        # (after an error, leaving the block waits for the other lanes' trials, as the rest of a batch would be)
        with ThreadPoolExecutor(self.plan.n_jobs, thread_name_prefix="trial-lane") as lanes:
            self._loop(lanes)

    def _loop(self, lanes: ThreadPoolExecutor | None) -> None:
        """Claim trials while there is room and launch them: as one batch, waited for (lanes None), or each in a
        free lane, the loop waiting for any lane to end."""
        waiting_logged, stale_checked, busy = False, -math.inf, set[Future]()
        while True:
            if time.monotonic() - stale_checked >= self.plan.heartbeat_interval:  # no trial goes stale faster
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # heartbeats are "experimental"
                    fail_stale_trials(self.study)
                stale_checked = time.monotonic()
            trials = self.study.get_trials(deepcopy=False)
            self._check_budget(trials)
            done = sum(map(counts_toward_n_trials, trials))
            if done >= self.plan.n_trials and not busy:
                self._check_result(trials)
                return
            running = sum(t.state == TrialState.RUNNING for t in trials)
            room = min(self.plan.n_trials - done - running, self.plan.n_jobs - len(busy))
            if room > 0:
                waiting_logged = False
                if (batch := self._claim(room, len(trials))) and lanes:
                    busy |= {lanes.submit(self._run_batch, [trial]) for trial in batch}
                elif batch:
                    self._run_batch(batch)
                continue
            if busy:
                busy = self._wait_for_a_lane(busy)
                continue
            if not waiting_logged:  # the last trials run elsewhere: they finish, or go stale and are queued again
                log.info("waiting for %d running trial(s) of other sweep processes%s", running, "" if has_heartbeat(
                    self.storage) else " (no heartbeat in this storage: a killed process's trial stays RUNNING; "
                    "see docs/scaling.md)")
                waiting_logged = True
            time.sleep(self.plan.heartbeat_interval)

    def _check_result(self, trials: list) -> None:
        if self.plan.fail_without_result and not any(t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                                                     for t in trials):
            raise NlpexpError(f"no trial of study {self.study.study_name} finished ({len(trials)} failed): "
                              f"nothing to rank; each trial's error is in {self.sweep_dir}/trials.md and "
                              f"its run.log")  # (trials the pruner stopped did finish, as it meant them to)

    def _wait_for_a_lane(self, busy: set[Future]) -> set[Future]:
        """The lanes still busy once one ended (or the heartbeat interval passed); an ended lane's error is raised."""
        ended, busy = wait(busy, timeout=self.plan.heartbeat_interval, return_when=FIRST_COMPLETED)
        for lane in ended:
            lane.result()
        return busy

    def _claim(self, count: int, known: int) -> list[optuna.Trial]:
        """Ask for `count` trials and keep those within n_trials (`known`: trials in the study when room was
        counted). Processes sharing the study may ask at the same moment; trial numbers order them: a new trial is
        kept only when fewer than n_trials finished or running trials have a smaller number."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "heartbeat is supposed to be used with Study.optimize"
            asked = [self.study.ask() for _ in range(count)]
        if [t.number for t in asked] == list(range(known, known + count)):
            return asked
        claimed = sorted(t.number for t in self.study.get_trials(deepcopy=False)
                         if t.state == TrialState.RUNNING or counts_toward_n_trials(t))
        keep = [t for t in asked if claimed.index(t.number) < self.plan.n_trials]
        for trial in [t for t in asked if t not in keep]:
            trial.set_user_attr(SKIPPED, "not run: other sweep processes took the last trials")
            if trial.params:  # a queued retry: queue it again
                requeue(self.study, self.storage, [trial.number])
            else:
                tell(self.study, trial, state=TrialState.FAIL)
        return keep

    def _run_batch(self, batch: list[optuna.Trial]) -> None:
        try:
            with self._heartbeats(batch):
                outcomes = self.launch(batch)
        except BaseException:
            requeue(self.study, self.storage, [t.number for t in batch])
            raise
        failures = sum(self._tell(trial, outcome) for trial, outcome in zip(batch, outcomes, strict=True))
        if failures / len(outcomes) > self.plan.max_failure_rate:  # the official rule: re-raise the first error
            log.error("Failed %d times out of %d with max_failure_rate=%s.", failures, len(outcomes),
                      self.plan.max_failure_rate)
            if errors := [outcome.error for outcome in outcomes if outcome.error is not None]:
                raise errors[0]

    @contextlib.contextmanager
    def _heartbeats(self, batch: list[optuna.Trial]) -> Iterator[None]:
        if not has_heartbeat(self.storage):  # a journal file: nobody would read the beats
            yield
            return
        ids = [trial_id(self.storage, self.study.study_name, t.number) for t in batch]
        stop = threading.Event()

        def beat() -> None:
            while True:
                for tid in ids:
                    try:
                        self.storage.record_heartbeat(tid)
                    except Exception as err:  # a busy database: the next beat will do
                        log.warning("heartbeat of trial id %d not recorded: %s", tid, err)
                if stop.wait(self.plan.heartbeat_interval):
                    return

        thread = threading.Thread(target=beat, name="study-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _tell(self, trial: optuna.Trial, outcome: Outcome) -> bool:
        """Store the trial's outcome; True when it failed."""
        if outcome.run_dir is not None:
            trial.set_user_attr(RUN_DIR, outcome.run_dir)
        if isinstance(outcome.error, optuna.TrialPruned):
            tell(self.study, trial, state=TrialState.PRUNED)  # optuna keeps the last reported value
            log.info("trial %d pruned", trial.number)
            return False
        values, problem = trial_values(outcome.value, self.plan.metrics)
        if outcome.error is not None or problem:
            error = f"{type(outcome.error).__name__}: {first_line(outcome.error)}" if outcome.error else problem
            trial.set_user_attr(ERROR, error)
            tell(self.study, trial, state=TrialState.FAIL)
            log.warning("trial %d failed: %s", trial.number, error)
            return True
        tell(self.study, trial, values=values)
        log.info("trial %d: %s", trial.number,
                 ", ".join(f"{name} = {value:.4g}" for name, value in zip(self.plan.metrics, values, strict=True)))
        return False

    def _check_budget(self, trials: list) -> None:
        """The study-wide failure_budget: the study stops once more than that share of n_trials failed."""
        failures, budget = failed(trials), self.plan.failure_budget
        if len(failures) > budget * self.plan.n_trials:
            raise NlpexpError(
                f"{len(failures)} of {self.plan.n_trials} trials failed (failure_budget={budget}); last, trial "
                f"{failures[-1].number}: {failures[-1].user_attrs[ERROR]}. Fix it and rerun, or raise "
                f"hydra.sweeper.failure_budget (failures: {self.sweep_dir}/trials.md)")

    def _finish(self, raising: bool = False) -> None:
        """The end of a sweep: optimization_results.yaml, the summary, the best model into the registry
        (plan.promote_objective); after an error (`raising`), without hiding that error."""
        from nlpexp.sweep.summary import promote_best, write_optimization_results, write_summary

        try:
            write_optimization_results(self.study, self.sweep_dir)
            lines = write_summary(self.study, self.sweep_dir, plots=self.plan.plots)
            if self.plan.promote_objective is not None:
                promote_best(self.study, self.plan.registry_dir, objective=self.plan.promote_objective)
        except Exception:
            if not raising:
                raise
            log.exception("the sweep summary could not be written")
            return
        log.info("%s", lines)
