"""A `hydra/launcher=slurm` sweep on a real single-node SLURM cluster (`make test-integration`).

The cluster is scripts/slurm_cluster.sh's: used when it answers, brought up (and down again) when this runs as
root, skipped otherwise. The study is in a PostgreSQL server started here, as on a real cluster.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from nlpexp.config import PROJECT_ROOT
from nlpexp.sweep.study import RUN_DIR, load_study
from tests.services import postgres_server
from tests.test_sweep import start_sweep, study_dir

pytestmark = pytest.mark.integration
SCRIPT = PROJECT_ROOT / "scripts" / "slurm_cluster.sh"
N_TRIALS = 3


def _answers(env: dict) -> bool:
    return shutil.which("sinfo") is not None and subprocess.run(
        ["sinfo", "-h"], env={**os.environ, **env}, capture_output=True, timeout=30).returncode == 0


@pytest.fixture(scope="module")
def slurm_env():
    """What a process needs to reach the cluster (SLURM_CONF), over the test's own environment."""
    env = {"SLURM_CONF": os.environ.get("SLURM_CONF") or
           os.environ.get("NLPEXP_SLURM_DIR", "/tmp/nlpexp-slurm") + "/slurm.conf"}
    if _answers(env):
        yield env
        return
    if os.geteuid() != 0:
        pytest.skip("no SLURM cluster answers and bringing one up needs root: run scripts/slurm_cluster.sh up")
    subprocess.run([str(SCRIPT), "up"], check=True, timeout=600)
    try:
        assert _answers(env)
        yield env
    finally:
        subprocess.run([str(SCRIPT), "down"], timeout=120)


def _array_tasks(env: dict) -> dict[str, str]:
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T"], env={**os.environ, **env}, capture_output=True,
                         text=True).stdout
    return dict(line.split() for line in out.splitlines() if "_" in line)


def _requeue_a_running_task(env: dict, root: Path, sweep: subprocess.Popen, log: Path, timeout: float = 300) -> str:
    """`scontrol requeue` an array task whose trial has started (as a preemption or an operator would)."""
    deadline = time.monotonic() + timeout

    def started() -> list[str]:
        return [job for job, state in _array_tasks(env).items() if state == "RUNNING" and any(
            "Starting with JobEnvironment" in p.read_text() for p in root.glob(f"multirun/*/.submitit/{job}/*.out"))]

    while not (running := started()):
        if sweep.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no array task ran:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    subprocess.run(["scontrol", "requeue", running[0]], env={**os.environ, **env}, check=True)
    # SLURM holds a requeued job back for a while (BeginTime); let it start again at once
    while _array_tasks(env).get(running[0]) not in ("PENDING", None):
        time.sleep(0.5)
    subprocess.run(["scontrol", "update", f"jobid={running[0]}", "StartTime=now"], env={**os.environ, **env},
                   capture_output=True)
    return running[0]


def test_a_slurm_sweep_runs_its_trials_as_array_jobs_and_survives_a_requeue(tmp_path, slurm_env, monkeypatch):
    with postgres_server() as postgres:
        monkeypatch.setenv("PGPASSWORD", postgres.password)
        args = (f"hydra.sweeper.n_trials={N_TRIALS}", "hydra/sweeper/sampler=random", "hydra/launcher=slurm",
                "hydra/sweeper/pruner=none",  # it counts finished trials: the preset's pruner could stop one
                f"hydra.sweeper.n_jobs={N_TRIALS}", "hydra.launcher.cpus_per_task=1", "hydra.launcher.gpus_per_node=0",
                "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=20", f"hydra.sweeper.storage={postgres.url}",
                "hydra.sweeper.grace_period=30")
        log = tmp_path / "sweep.log"
        sweep = start_sweep(tmp_path, "sbert_nli", *args, log=log, env={**slurm_env, **postgres.env})
        try:
            requeued = _requeue_a_running_task(slurm_env, tmp_path, sweep, log)
            assert sweep.wait(timeout=900) == 0, log.read_text()[-3000:]
        finally:
            if sweep.poll() is None:
                sweep.kill()
        study, sweep_dir = load_study(str(study_dir(tmp_path)))
        trials = study.get_trials()

    assert [t.state for t in trials] == [TrialState.COMPLETE] * N_TRIALS  # the requeued trial too, once
    jobs = sorted(p.name for p in (sweep_dir / ".submitit").iterdir() if re.fullmatch(r"\d+_\d+", p.name))
    array_id = requeued.split("_")[0]
    assert jobs == [f"{array_id}_{i}" for i in range(N_TRIALS)]  # one array job, one task per trial
    for job in jobs:  # each task's log, in the study's dir, ends with the job's success
        assert "Job completed successfully" in (sweep_dir / ".submitit" / job / f"{job}_0_log.out").read_text()
    requeued_log = (sweep_dir / ".submitit" / requeued / f"{requeued}_0_log.out").read_text()
    assert len(re.findall(r"Starting with JobEnvironment", requeued_log)) == 2  # ran, was requeued, ran again
    for t in trials:  # the value each job computed came back into the study
        metrics = json.loads((Path(t.user_attrs[RUN_DIR]) / "metrics.json").read_text())
        assert metrics["val/spearman_cosine"] == pytest.approx(t.value)
