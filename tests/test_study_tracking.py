"""A 2-trial sweep tracked by a real `mlflow server` on 127.0.0.1 and by TensorBoard, read back as their users do:
the best trial published to MLflow's registry points at that trial's run, and TensorBoard's HPARAMS view of the
study (its HTTP API, as the browser calls it) opens on the swept params and the optimised metric."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

import pytest

from nlpexp import registry
from nlpexp.config import PROJECT_ROOT
from tests import forkserver
from tests.services import _wait_until_up, free_port

METRIC = "val/spearman_cosine"
SWEPT = ("optimizer.lr", "optimizer.weight_decay", "scheduler.warmup_ratio", "trainer.batch_size")


@pytest.fixture(scope="module")
def swept(tmp_path_factory, data_root, tracking_uri):
    """The sweep, on the test process's MLflow server (tests/services.py): its experiment and registered model are
    named after its study, whose name is its own (it hashes where the study is stored)."""
    from nlpexp.sweep.study import load_study

    root = tmp_path_factory.mktemp("study-tracking")
    command = [sys.executable, str(PROJECT_ROOT / "run.py"), "-m", "hparams_search=sbert_nli", "model=tiny_bert",
               "debug=smoke", "logger=[mlflow,tensorboard]", "hydra.sweeper.n_trials=2",
               "hydra/sweeper/sampler=random", "hydra.sweeper.plots=false", "hydra.sweeper.promote_best=true",
               f"hydra.sweeper.studies_dir={root / 'multirun'}", f"hydra.sweeper.registry_dir={root / 'registry'}",
               f"paths.ledger_file={root / 'ledger.jsonl'}"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "NLPEXP_DATA_DIR": str(data_root), "HF_HUB_OFFLINE": "1"}
    done = forkserver.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (sweep_dir,) = [p for p in (root / "multirun").iterdir() if p.is_dir()]
    study, _ = load_study(str(sweep_dir))
    return root, sweep_dir, study, tracking_uri


def test_the_published_best_trial_points_at_its_mlflow_run(swept, monkeypatch, capsys):
    from mlflow import MlflowClient

    root, sweep_dir, study, uri = swept
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(study.study_name)  # a study's trials share its experiment
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == [f"{study.study_name}/0", f"{study.study_name}/1"]  # runs named <study>/<trial>

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert registry.main(["--root", str(root / "registry"), "publish", f"{study.study_name}@latest"]) == 0
    published = capsys.readouterr().out.strip()
    assert published == f"registry:mlflow:{study.study_name}@v1"
    [version] = client.search_model_versions(f"name='{study.study_name}'")
    best = runs[f"{study.study_name}/{study.best_trial.number}"]
    assert version.run_id == best.info.run_id  # the trial's own run: no second upload, no empty source run
    assert best.data.metrics[METRIC] == pytest.approx(study.best_value)
    assert best.data.tags["nlpexp.trial"] == str(study.best_trial.number)


def test_tensorboard_hparams_of_the_study_open_on_the_swept_params_and_the_metric(swept, tmp_path):
    _, sweep_dir, study, _ = swept
    port = free_port()
    log = tmp_path / "tensorboard.log"
    with open(log, "w") as out:
        server = forkserver.popen([sys.executable, "-m", "nlpexp.cli", "tb", "serve", str(sweep_dir),
                                   "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/data/runs", server, log)
        experiment = _post(port, "experiment", {"experimentName": ""}, until="hparamInfos")
        assert [h["name"] for h in experiment["hparamInfos"]] == sorted(SWEPT) == sorted(study.best_params)
        assert [m["name"]["tag"] for m in experiment["metricInfos"]] == [METRIC]

        columns = [{"hparam": name} for name in sorted(SWEPT)] + [{"metric": {"group": "", "tag": METRIC}}]
        request = {"experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS"],
                   "colParams": columns, "startIndex": 0, "sliceSize": 10}
        groups = _post(port, "session_groups", request, until="sessionGroups")["sessionGroups"]
        shown = []
        for group in groups:  # one session per trial: its params and its optimised metric
            metric = [m["value"] for m in group["metricValues"] if m["name"]["tag"] == METRIC]
            shown.append(([group["hparams"][name] for name in SWEPT], metric))
        trials = sorted(study.trials, key=lambda t: t.params[SWEPT[0]])
        expected = [([pytest.approx(t.params[name]) for name in SWEPT], [pytest.approx(t.value)]) for t in trials]
        assert sorted(shown, key=lambda session: session[0][0]) == expected
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _post(port: int, endpoint: str, body: dict, until: str, seconds: float = 90) -> dict:
    """The hparams plugin's answer once it holds `until` (TensorBoard reads the event files after it starts)."""
    import time

    deadline, answer = time.monotonic() + seconds, {}
    while time.monotonic() < deadline:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/data/plugin/hparams/{endpoint}", method="POST",
                                         data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = json.loads(response.read())
        except OSError:
            answer = {}
        if answer.get(until):
            return answer
        time.sleep(0.2)
    raise AssertionError(f"TensorBoard's hparams {endpoint} never held {until}: {answer}")
