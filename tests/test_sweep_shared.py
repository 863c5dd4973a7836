"""Studies shared between sweep processes: in a real PostgreSQL server started here (skipped where it cannot
be), or in a journal file (no server).

PostgreSQL, one scenario kept short: process A starts, B joins, A is killed mid-trial; B finishes the study. It checks
what sharing a study across machines promises: exactly n_trials finished, no trial run twice, pruning decided
over both processes' reports, the killed trial failed and its params run again by B, no password on disk.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nlpexp.sweep.study import ERROR, SKIPPED, load_study
from tests.services import postgres_server
from tests.test_sweep import _wait_for, counted, run_sweep, start_sweep, study_dir

LAUNCHED = re.compile(r"\t#(\d+) : ")
PRUNED = re.compile(r"^trial \d+ pruned$", re.M)  # a sweep's line once it stored the trial as pruned
N_TRIALS = 6
# lr=1e-30 leaves the weights as loaded: every trial reports the same value at every evaluation, so the
# successive-halving pruner decides by arrival alone. With bootstrap_count=1 the first trial of the study to
# reach a rung has nobody to be compared with and is pruned; later ones tie and go on. So exactly one trial is
# pruned at the first rung only if each process sees the other's reports.
ARGS = (f"hydra.sweeper.n_trials={N_TRIALS}", "hydra/sweeper/sampler=random", "optimizer.lr=1e-30",
        "trainer.max_steps=8", "trainer.eval_every_steps=4", "hydra/sweeper/pruner=successive_halving",
        "hydra.sweeper.pruner.min_resource=4", "hydra.sweeper.pruner.reduction_factor=2",
        "hydra.sweeper.pruner.bootstrap_count=1", "hydra.sweeper.promote_best=false",
        "hydra.sweeper.plots=false",  # seconds of CPU at the end of each sweep, for plots nothing here reads
        # the launcher's `#<n> : <overrides>` lines (off on the console by default) say which process ran a trial
        "hydra.verbose=[hydra._internal.core_plugins.basic_launcher]")


@pytest.fixture(scope="module")
def postgres():
    with postgres_server() as server:
        yield server


def _early(trial) -> bool:
    """Running and not yet at its first evaluation: seconds of training ahead, so that the kill that follows lands
    mid-trial (a trial seen running just before its end could finish first on a busy machine)."""
    return trial.state == TrialState.RUNNING and not trial.intermediate_values


def launched(log: Path) -> list[int]:
    return [int(n) for n in LAUNCHED.findall(log.read_text())] if log.exists() else []


def test_two_sweep_processes_share_a_postgresql_study_and_survive_a_kill(tmp_path, postgres):
    args = (*ARGS, f"hydra.sweeper.storage={postgres.url}")
    storage = optuna.storages.RDBStorage(postgres.url.replace("nlpexp@", f"nlpexp:{postgres.password}@"))
    logs = {name: tmp_path / f"{name}.log" for name in "AB"}

    def trials() -> list:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
        return optuna.load_study(study_name=names[0], storage=storage).get_trials() if names else []

    a = start_sweep(tmp_path, "sbert_nli", *args, log=logs["A"], env=postgres.env)
    b = None
    try:
        # B joins once A's first trial has been pruned at the first rung (so that no two trials race to it), as A's
        # log says once the state is stored (read 5 times a second: cheaper than as many database queries).
        _wait_for(lambda: PRUNED.search(logs["A"].read_text()), a, logs["A"])
        b = start_sweep(tmp_path, "sbert_nli", *args, log=logs["B"], env=postgres.env)
        _wait_for(lambda: launched(logs["B"]) and _early(trials()[launched(logs["A"])[-1]]), a, logs["A"])
    finally:
        os.killpg(a.pid, signal.SIGKILL)  # kill -9 mid-trial: no chance to clean up
        a.wait()
    killed_number = launched(logs["A"])[-1]
    assert b.wait(timeout=400) == 0, logs["B"].read_text()[-3000:]

    by_a, by_b = set(launched(logs["A"])), set(launched(logs["B"]))
    assert by_a and by_b and not by_a & by_b  # both worked, no trial ran twice
    study = trials()
    assert len(counted(study)) == N_TRIALS
    interrupted = [t for t in study if t.state == TrialState.FAIL and not {ERROR, SKIPPED} & set(t.user_attrs)]
    assert [t.number for t in interrupted] == [killed_number]
    (retry,) = [t for t in study if t.system_attrs.get("failed_trial") == killed_number]
    assert retry.number in by_b and retry.params == interrupted[0].params and retry in counted(study)
    params = [tuple(sorted(t.params.items())) for t in counted(study)]
    assert len(set(params)) == N_TRIALS  # nothing else drawn twice

    pruned_at_first_rung = [t.number for t in study if t.state == TrialState.PRUNED and max(t.intermediate_values) == 4]
    assert pruned_at_first_rung == [0]  # B's first trial was compared with A's report, not pruned as a first one
    assert all(4 in t.intermediate_values for t in study if t.number in by_b)

    for path in (tmp_path / "multirun").rglob("*"):  # the password stayed in the environment
        assert not path.is_file() or postgres.password.encode() not in path.read_bytes(), path


def test_a_journal_file_holds_the_study_without_a_server(tmp_path):
    journal = tmp_path / "shared" / "study.log"
    args = ("hydra.sweeper.n_trials=2", "hydra/sweeper/sampler=random", f"hydra.sweeper.storage=journal://{journal}",
            "hydra.sweeper.promote_best=false", "hydra.sweeper.plots=false")
    assert run_sweep(tmp_path, "sbert_nli", *args) == 0
    study, _ = load_study(str(study_dir(tmp_path)))  # through the study.json that names the journal
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 2
    assert all(list(t.intermediate_values) == [2, 4] for t in study.get_trials())  # the trials reported to it
    assert journal.stat().st_size > 0 and not (study_dir(tmp_path) / "optuna.db").exists()
    # rerunning the command resumes the same study from the journal: nothing more to run
    assert run_sweep(tmp_path, "sbert_nli", *args) == 0
    assert len(load_study(f"journal://{journal}")[0].get_trials()) == 2


def test_a_password_in_the_storage_url_fails_before_anything_is_written(tmp_path, capfd):
    assert run_sweep(tmp_path, "sbert_nli", "hydra.sweeper.storage=postgresql+psycopg://u:hunter22@127.0.0.1:1/db") == 2
    captured = capfd.readouterr()
    errors = [line for line in (captured.out + captured.err).splitlines() if "error:" in line]
    assert len(errors) == 1 and "PGPASSWORD" in errors[0] and "hunter22" not in captured.out + captured.err
    assert not (tmp_path / "multirun").exists()


@pytest.mark.parametrize("url", ["journal://relative/study.log", "journal://"])
def test_a_journal_needs_an_absolute_path(url):
    from nlpexp import NlpexpError
    from nlpexp.sweep.storage import open_storage

    with pytest.raises(NlpexpError, match="absolute path"):
        open_storage(url)
