"""Sweeps leave no orphans: a parallel sweep's worker ends with its sweep, even one killed with SIGKILL; a trial
the study has already given up is never finished as if it were still the study's."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from hydra_plugins.nlpexp_optuna_sweeper import check_trial_owned, trial_env
from nlpexp import NlpexpError
from nlpexp.io import read_ledger
from nlpexp.pipeline import run
from nlpexp.sweep.storage import open_storage

# A sweep process in miniature: trials in loky workers (the backend of hydra/launcher=parallel).
SWEEP = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from joblib import Parallel, delayed

    def trial(marker):
        from nlpexp.sweep import end_with_parent
        import os
        end_with_parent()
        Path(marker + ".tmp").write_text(str(os.getpid()))
        os.replace(marker + ".tmp", marker)  # whole or absent: the test reads it as soon as it exists
        while True:
            time.sleep(0.05)  # a trial at work

    # Two trials: joblib runs a single one in the calling process itself.
    Parallel(n_jobs=2, backend="loky")([delayed(trial)(sys.argv[1] + suffix) for suffix in ("", ".other")])
""")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")  # a zombie has ended; only its exit status waits for a parent


def test_a_worker_ends_with_its_sweep_killed_by_sigkill(tmp_path):
    marker = tmp_path / "worker.pid"
    sweep = subprocess.Popen([sys.executable, "-c", SWEEP, str(marker)])
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert sweep.poll() is None and time.monotonic() < deadline, "the worker never started"
            time.sleep(0.1)
        worker = int(marker.read_text())
        assert _alive(worker)
        sweep.send_signal(signal.SIGKILL)  # the sweep alone: no process group kill to help
        sweep.wait()
        deadline = time.monotonic() + 20  # the watcher: 1 s to notice, then the end once the trial has unwound
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(worker), "the worker outlived its sweep"  # (the trial's ledger line: the slow test below)
    finally:
        sweep.kill()
        for pid_file in (marker, marker.with_name(marker.name + ".other")):
            if pid_file.exists() and _alive(int(pid_file.read_text())):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)


@pytest.fixture
def trial_of_a_study(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=open_storage(url))
    trial = study.ask()
    for key, value in trial_env(url, "s", trial.number).items():
        monkeypatch.setenv(key, value)
    return study, trial


def test_a_trial_the_study_gave_up_is_not_finished(trial_of_a_study, compose_run, tmp_path):
    study, trial = trial_of_a_study
    check_trial_owned()  # running: this run may finish it
    study.tell(trial, state=optuna.trial.TrialState.FAIL)  # what a resumed sweep does to a killed sweep's trial
    with pytest.raises(NlpexpError, match=r"^trial 0 is already FAIL in its study"):
        check_trial_owned()
    with pytest.raises(NlpexpError, match=r"^trial 0 is already FAIL in its study"):
        run(compose_run("task=sbert_nli", "model=tiny_bert", "debug=smoke", "logger=none"))
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert [r["status"] for r in read_ledger(tmp_path / "ledger.jsonl")] == ["failed"]
    assert study.trials[0].state == optuna.trial.TrialState.FAIL and study.trials[0].value is None


def _loky_workers_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"popen_loky_posix" in cmdline:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
def test_killing_a_parallel_sweep_ends_its_workers_and_their_trials(tmp_path):
    from tests.test_sweep import sweep_args

    args = sweep_args(tmp_path, "sbert_nli", "hydra.sweeper.n_trials=2", "hydra/launcher=parallel",
                      "hydra.launcher.n_jobs=2", "trainer.max_steps=5000", "trainer.eval_every_steps=1000")
    with open(tmp_path / "sweep.log", "w") as out:
        sweep = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
                                 env={**os.environ, "HF_HUB_OFFLINE": "1"})
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 300
        while len(list(tmp_path.glob("multirun/*/*/config.yaml"))) < 2:  # both trials under way
            assert sweep.poll() is None and time.monotonic() < deadline, (tmp_path / "sweep.log").read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(3)
        workers += _loky_workers_of(sweep.pid)
        assert len(workers) == 2
        sweep.send_signal(signal.SIGKILL)  # the sweep process alone, as `kill -9 <pid>` does
        sweep.wait()
        deadline = time.monotonic() + 60
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not any(map(_alive, workers)), "a worker outlived its sweep"
        records = read_ledger(tmp_path / "ledger.jsonl")
        assert [r["status"] for r in records] == ["interrupted", "interrupted"]
        assert not list(tmp_path.glob("multirun/*/*/metrics.json"))
    finally:
        sweep.kill()
        for pid in filter(_alive, workers):
            os.kill(pid, signal.SIGKILL)


def test_the_sweep_interrupt_is_not_lost_in_a_finalizer(monkeypatch):
    """The interrupt may land while the garbage collector runs a `__del__` (the trainer's gc.collect at train start),
    where Python drops any exception: it is sent again, outside it."""
    from nlpexp import sweep

    inside, dropped = threading.Event(), []

    class Finalized:
        def __del__(self):
            inside.set()
            try:
                deadline = time.monotonic() + 1
                while time.monotonic() < deadline:  # the interrupt lands here
                    pass
            except KeyboardInterrupt:
                dropped.append(True)
                raise

    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)  # (the watcher's, put back after the test)
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, lambda signum, frame: sweep._interrupt(before, signum, frame))
    try:
        with pytest.raises(KeyboardInterrupt, match="the sweep process is gone"), sweep.run_in_progress():
            threading.Thread(target=lambda: inside.wait() and sweep._interrupt_run()).start()
            Finalized()  # dropped at once: its __del__ runs
            for _ in range(300):
                time.sleep(0.01)
        assert dropped == [True]
    finally:
        signal.signal(signal.SIGINT, before)
        sweep._orphaned.clear()


@contextlib.contextmanager
def _parallel_sweep_under_way(tmp_path: Path) -> Iterator[subprocess.Popen]:
    """A parallel sweep (2 workers, 3 long trials) with both workers' trials under way; killed at the end if the
    test left it running."""
    from tests.test_sweep import sweep_args

    args = sweep_args(tmp_path, "sbert_nli", "hydra.sweeper.n_trials=3", "hydra/launcher=parallel",
                      "hydra.launcher.n_jobs=2", "trainer.max_steps=5000", "trainer.eval_every_steps=1000",
                      "hydra/sweeper/pruner=none")  # on a loaded machine a trial could be pruned before the signal
    with open(tmp_path / "sweep.log", "w") as out:
        # SIGINT as a person's terminal delivers it: a suite started in the background (`cmd &`, some CI shells)
        # hands its children SIGINT ignored, and Python keeps an ignored SIGINT ignored
        sweep = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True,
                                 env={**os.environ, "HF_HUB_OFFLINE": "1"},
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 300
        while len(list(tmp_path.glob("multirun/*/*/config.yaml"))) < 2:  # both workers' trials under way
            assert sweep.poll() is None and time.monotonic() < deadline, (tmp_path / "sweep.log").read_text()[-3000:]
            time.sleep(0.5)
        yield sweep
    finally:
        os.killpg(sweep.pid, signal.SIGKILL) if sweep.poll() is None else None


def _trial_states(tmp_path: Path) -> list[str]:
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{next(tmp_path.glob('multirun/*/optuna.db'))}")
    return sorted(t.state.name for t in study.get_trials())


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_to_a_parallel_sweep_s_group_ends_it_and_queues_its_running_trials_again(tmp_path, signum):
    """Ctrl-C (SIGINT) reaches the terminal's whole process group, and so does `kill` of a shell's job (SIGTERM):
    each worker's trial ends `interrupted` and is recorded (SIGTERM's default would end a worker with no ledger line),
    its lane hands the trial back to the study (WAITING, to run again on a rerun), and the sweep ends without
    waiting for a trial."""
    with _parallel_sweep_under_way(tmp_path) as sweep:
        time.sleep(3)
        os.killpg(sweep.pid, signum)  # what Ctrl-C in the terminal does, or `kill %1`
        assert sweep.wait(timeout=60) == 128 + signum
    records = read_ledger(tmp_path / "ledger.jsonl")  # (a plain KeyboardInterrupt, pickled with the job's return
    # Hydra attaches to it, took minutes to reach the sweep: the workers raise run.py's Interrupted instead)
    assert [(r["status"], r["error"]) for r in records] == [("interrupted", f"interrupted by {signum.name}")] * 2
    # the one error line is the last: no resource-tracker warning after it (a worker's progress-bar semaphore, leaked
    # when joblib kills its pool)
    printed = (tmp_path / "sweep.log").read_text().splitlines()
    assert printed[-1] == f"error: interrupted by {signum.name}", printed[-4:]
    assert _trial_states(tmp_path) == ["FAIL", "FAIL", "WAITING", "WAITING"]  # the two interrupted, queued again


@pytest.mark.slow
def test_a_worker_killed_mid_trial_ends_the_sweep_with_one_line_saying_what_to_change(tmp_path):
    """The kernel's OOM killer ends a worker of a parallel sweep with SIGKILL: the sweep ends at once with one line
    (not joblib's `unexpected TerminatedWorkerError`), and the trials under way are queued to run again."""
    with _parallel_sweep_under_way(tmp_path) as sweep:
        workers = subprocess.run(["pgrep", "-g", str(sweep.pid), "-f", "loky.backend.popen_loky_posix"],
                                 capture_output=True, text=True).stdout.split()
        assert len(workers) == 2, workers
        os.kill(int(workers[0]), signal.SIGKILL)
        assert sweep.wait(timeout=60) == 2
    errors = [line for line in (tmp_path / "sweep.log").read_text().splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "worker process of hydra/launcher=parallel was killed mid-trial" in errors[0], errors
    assert "SIGKILL" in errors[0] and "hydra.launcher.n_jobs" in errors[0]
    assert _trial_states(tmp_path) == ["FAIL", "FAIL", "WAITING", "WAITING"]  # both trials under way, queued again


def test_a_trial_takes_sigterm_only_where_nobody_else_handles_it():
    """A worker's SIGTERM has its default action: during a trial it raises Interrupted (held while a checkpoint is
    sealed) and is back to the default after. A handler already there (submitit's `bypass` in a SLURM job, run.py's
    in the sweep process) is left as it is."""
    from nlpexp import sweep
    from nlpexp.boundary import raise_interrupted

    def submitit_bypass(signum, frame):
        pass

    before = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with sweep.run_in_progress():
            assert signal.getsignal(signal.SIGTERM) is raise_interrupted
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        signal.signal(signal.SIGTERM, submitit_bypass)
        with sweep.run_in_progress():
            assert signal.getsignal(signal.SIGTERM) is submitit_bypass
    finally:
        signal.signal(signal.SIGTERM, before)
