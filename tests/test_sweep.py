"""Sweeps: `python run.py -m hparams_search=<preset>` on tiny models.

Most sweeps run run.py's main in this process (Hydra's multirun, sweeper and launcher included: the same
code path as the command line, without paying the imports again); killing a sweep and two cooperating
sweeps need real processes.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from unittest import mock

import optuna
import pytest
from optuna.trial import TrialState

from nlpexp.config import PROJECT_ROOT
from nlpexp.sweep.study import ERROR, RUN_DIR, load_study, note
from tests import forkserver

TRIAL_LINE = re.compile(r"(?:^|\] )trial (\d+): val/spearman_cosine = ", re.M)  # (bare: the sweep console)


def sweep_args(root: Path, preset: str, *overrides: str) -> list[str]:
    """A tiny-model sweep; its study, registry and ledger under `root` (a given model= replaces tiny_bert)."""
    model = [] if any(o.startswith("model=") for o in overrides) else ["model=tiny_bert"]
    return [sys.executable, str(PROJECT_ROOT / "run.py"), "-m", f"hparams_search={preset}", *model,
            "debug=smoke", "logger=none", f"hydra.sweeper.studies_dir={root / 'multirun'}",
            f"hydra.sweeper.registry_dir={root / 'registry'}", "hydra.sweeper.promote_best=true",
            f"paths.ledger_file={root / 'ledger.jsonl'}",
            "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=3", *overrides]


def run_sweep(root: Path, preset: str, *overrides: str) -> int:
    """`python run.py -m ...` in this process; returns its exit code."""
    spec = importlib.util.spec_from_file_location("run_py", PROJECT_ROOT / "run.py")
    run_py = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_py)
    root_logger = logging.getLogger()
    saved = root_logger.level, list(root_logger.handlers)
    try:
        with mock.patch.object(sys, "argv", ["run.py", *sweep_args(root, preset, *overrides)[2:]]):
            run_py.main()
        return 0
    except SystemExit as exit_:
        return exit_.code
    finally:  # Hydra configured logging for the sweep (a file handler in the last trial's dir among others)
        for handler in root_logger.handlers:
            if handler not in saved[1]:
                handler.close()
        root_logger.setLevel(saved[0])
        root_logger.handlers[:] = saved[1]


def start_sweep(root: Path, preset: str, *overrides: str, log: Path, env: dict | None = None) -> subprocess.Popen:
    """A sweep in the background, its output to `log` (a pipe nobody reads would block it)."""
    with open(log, "w") as out:
        return forkserver.popen(sweep_args(root, preset, *overrides), stdout=out, stderr=subprocess.STDOUT,
                                text=True, cwd=root, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
                                start_new_session=True)


def study_dir(root: Path) -> Path:
    (found,) = [p for p in (root / "multirun").iterdir() if p.is_dir()]
    return found


def counted(trials) -> list:
    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED) or ERROR in t.user_attrs]


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory, data_root) -> Path:
    """One 3-trial sbert_nli sweep (random sampler) that several tests read."""
    root = tmp_path_factory.mktemp("sweep")
    with pytest.MonkeyPatch.context() as env:  # (the autouse env fixtures are per test)
        env.setenv("NLPEXP_DATA_DIR", str(data_root))
        assert run_sweep(root, "sbert_nli", "hydra.sweeper.n_trials=3", "hydra/sweeper/sampler=random") == 0
    return root


def test_sweep_runs_its_trials_and_leaves_the_summary(finished_sweep):
    sweep = study_dir(finished_sweep)
    assert sweep.name.startswith("sbert_nli-")
    study, _ = load_study(str(sweep))
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 3
    for t in trials:  # trial N runs in <sweep dir>/N and its value is the run's optimized metric
        assert t.user_attrs[RUN_DIR] == str(sweep / str(t.number))
        metrics = json.loads((sweep / str(t.number) / "metrics.json").read_text())
        assert metrics["val/spearman_cosine"] == pytest.approx(t.value)
        assert len(t.intermediate_values) == 2  # debug=smoke evaluates at steps 2 and 4

    rows = (sweep / "trials.csv").read_text().splitlines()
    assert rows[0].startswith("number,state,value,start,duration_s,run_s,queue_s,host,optimizer.lr,")
    assert len(rows) == 4
    for row in csv.DictReader(rows):  # the starting model's score of each trial, from its metrics.json
        trial_metrics = json.loads((sweep / row["number"] / "metrics.json").read_text())
        assert float(row["start"]) == pytest.approx(trial_metrics["start/spearman_cosine"])
        # its own run time (within Optuna's ask-to-tell; the start is kept to the second), wait and machine
        assert 0 < float(row["run_s"]) <= float(row["duration_s"]) + 1 and float(row["queue_s"]) >= 0
        assert row["host"] == platform.node()
    assert "| 2 | COMPLETE |" in (sweep / "trials.md").read_text()
    best = json.loads((sweep / "best.json").read_text())
    assert best["best_trial"] == study.best_trial.number and best["best_params"] == study.best_trial.params
    assert best["metric"] == "val/spearman_cosine" and best["trials"]["complete"] == 3
    assert "best_params:" in (sweep / "best.yaml").read_text()
    for plot in ("optimization_history", "param_importances", "parallel_coordinate", "intermediate_values"):
        assert (sweep / "plots" / f"{plot}.png").stat().st_size > 10_000
        if optuna.visualization.is_available():  # plotly installed (a dependency; HTML is skipped without it)
            assert "plotly.min.js" in (sweep / "plots" / f"{plot}.html").read_text()


def test_the_best_model_is_registered_with_its_config_and_metrics(finished_sweep):
    from nlpexp import registry

    sweep = study_dir(finished_sweep)
    study, _ = load_study(str(sweep))
    model = registry.resolve(f"registry:{study.study_name}@latest", finished_sweep / "registry")
    assert (model / "modules.json").is_file() and (model / "nli_head.safetensors").is_file()
    version = model.parent
    run_dir = sweep / str(study.best_trial.number)
    assert json.loads((version / "source.json").read_text())["run_dir"] == str(run_dir)
    assert (version / "metrics.json").read_text() == (run_dir / "metrics.json").read_text()
    assert (version / "config.yaml").read_text() == (run_dir / "config.yaml").read_text()


def test_summary_is_rebuilt_from_the_storage_alone(finished_sweep, tmp_path):
    from nlpexp.sweep.__main__ import main

    sweep = study_dir(finished_sweep)
    written = {name: (sweep / name).read_text() for name in ("trials.csv", "trials.md", "best.json", "best.yaml")}
    for name in written:
        (sweep / name).unlink()
    assert main(["summary", str(sweep)]) == 0
    assert {name: (sweep / name).read_text() for name in written} == written

    # From a storage URL, into another dir
    assert main(["summary", f"sqlite:///{sweep / 'optuna.db'}", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "best.json").read_text() == written["best.json"]
    assert (tmp_path / "plots" / "optimization_history.png").is_file()


def test_rerunning_a_finished_sweep_runs_nothing_more(finished_sweep, capsys):
    assert run_sweep(finished_sweep, "sbert_nli", "hydra.sweeper.n_trials=3", "hydra/sweeper/sampler=random") == 0
    assert "3 of 3 trials finished" in capsys.readouterr().out
    study, _ = load_study(str(study_dir(finished_sweep)))
    assert len(study.get_trials()) == 3
    assert [p.name for p in (finished_sweep / "registry" / study.study_name).glob("v*")] == ["v1"]  # not again


def test_dashboard_serves_the_study_over_http(finished_sweep):
    sweep = study_dir(finished_sweep)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = forkserver.popen([sys.executable, "-m", "nlpexp.sweep", "dashboard", str(sweep), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        studies = _get_json(f"http://127.0.0.1:{port}/api/studies", server)["study_summaries"]
        (summary,) = studies
        assert summary["study_name"] == sweep.name
        detail = _get_json(f"http://127.0.0.1:{port}/api/studies/{summary['study_id']}", server)
        assert len(detail["trials"]) == 3 and detail["directions"] == ["maximize"]
    finally:
        server.terminate()
        server.wait(timeout=30)


def _get_json(url: str, server: subprocess.Popen, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            if server.poll() is not None:
                raise AssertionError(f"the dashboard exited: {server.stderr.read()[-2000:]}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_pruned_trials_are_stored_pruned_with_their_last_value(tmp_path):
    # A threshold above any correlation prunes every trial at its first evaluation (step 2): deterministic.
    # (hydra.sweep.dir given: the study lives there rather than in <studies_dir>/<study>.)
    assert run_sweep(tmp_path, "sbert_nli", "hydra.sweeper.n_trials=2", "hydra/sweeper/pruner=none",
                     f"hydra.sweep.dir={tmp_path / 'multirun' / 'pruned'}",
                     "hydra.sweeper.pruner._target_=optuna.pruners.ThresholdPruner",
                     "+hydra.sweeper.pruner.lower=1.0") == 0
    assert study_dir(tmp_path).name == "pruned"
    study, _ = load_study(str(study_dir(tmp_path)))
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.PRUNED] * 2
    for t in trials:
        assert list(t.intermediate_values) == [2] and t.value == t.intermediate_values[2]
        assert note(t) == "pruned at step 2"
        assert not (Path(t.user_attrs[RUN_DIR]) / "metrics.json").exists()  # stopped before the end
    assert json.loads((study_dir(tmp_path) / "best.json").read_text())["trials"]["pruned"] == 2
    ledger_lines = (tmp_path / "ledger.jsonl").read_text().splitlines()
    assert [json.loads(line)["status"] for line in ledger_lines] == ["pruned"] * 2


def test_failed_and_nan_trials_are_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    grid = ("hydra/sweeper/sampler=grid", "hydra.sweeper.params=null", "trainer.batch_size=choice(8,0)",
            "optimizer.lr=choice(2e-5,1e30)")
    assert run_sweep(tmp_path, "sbert_nli", *grid, "hydra.sweeper.failure_budget=0.75") == 0
    study, _ = load_study(str(study_dir(tmp_path)))
    by_params = {(t.params["trainer.batch_size"], t.params["optimizer.lr"]): t for t in study.get_trials()}
    assert len(by_params) == 4  # the grid, each point once
    assert by_params[(8, 2e-5)].state == TrialState.COMPLETE
    assert by_params[(8, 1e30)].user_attrs[ERROR].startswith("NlpexpError: training loss became nan")
    assert by_params[(0, 2e-5)].user_attrs[ERROR].startswith("NlpexpError: trainer.batch_size must be a positive")
    failures = (study_dir(tmp_path) / "trials.md").read_text().split("## Failures")[1]
    assert failures.count("- trial ") == 3 and "became nan" in failures

    # More failures than failure_budget allows: the sweep ends with one error line and exit code 2.
    capsys.readouterr()
    assert run_sweep(tmp_path, "sbert_nli", *grid, "hydra.sweeper.failure_budget=0.5") == 2
    captured = capsys.readouterr()
    errors = [line for line in (captured.out + captured.err).splitlines() if "error:" in line]
    assert len(errors) == 1 and "3 of 4 trials failed" in errors[0]


def test_a_search_space_key_the_config_lacks_fails_before_any_trial(tmp_path, capfd):
    assert run_sweep(tmp_path, "sbert_nli", "optimizer.lrr=interval(1e-5,1e-4)") == 2
    captured = capfd.readouterr()
    errors = [line for line in (captured.out + captured.err).splitlines() if "error:" in line]
    assert len(errors) == 1 and "not in the config: optimizer.lrr" in errors[0], errors
    assert not (tmp_path / "multirun").exists() or not any((tmp_path / "multirun").iterdir())


def test_a_bad_base_setting_is_refused_by_the_gate_before_a_study_exists(tmp_path):
    """run.py's gate checks the config every trial starts from (in-process run_sweep calls skip the gate)."""
    from nlpexp import NlpexpError
    from nlpexp.gate import check_command_line

    argv = sweep_args(tmp_path, "sbert_nli", "trainer.batch_size=0")[2:]
    with pytest.raises(NlpexpError, match="trainer.batch_size must be a positive integer, got 0"):
        check_command_line(argv, str(PROJECT_ROOT / "run.py"), str(PROJECT_ROOT / "conf"), "config")
    check_command_line(argv[:-1], str(PROJECT_ROOT / "run.py"), str(PROJECT_ROOT / "conf"), "config")  # fine
    assert not (tmp_path / "multirun").exists()


@pytest.mark.slow
def test_ablation_grid_sweep(tmp_path):
    assert run_sweep(tmp_path, "sbert_nli_ablation", "hydra.sweeper.n_trials=2") == 0
    study, _ = load_study(str(study_dir(tmp_path)))
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 2
    for t in trials:
        config = (Path(t.user_attrs[RUN_DIR]) / "config.yaml").read_text()
        assert f"pooling: {t.params['model.pooling']}" in config
        rep = str(t.params["loss.concatenation_sent_rep"]).lower()
        assert f"concatenation_sent_rep: {rep}" in config


SUMMARIZE_FAST = ("model=tiny_bart", "data.max_eval_samples=8")
# The TPE presets prune (hydra/sweeper/pruner=halving): where a test counts finished runs, every trial runs to its end.
RUN_TO_THE_END = ("hydra/sweeper/pruner=none",)
PRUNING_PRESETS = ("sbert_nli", "embedding", "classification")


@pytest.mark.slow
@pytest.mark.parametrize("preset,overrides", [
    ("embedding", ()),
    ("embedding_ablation", ()),
    ("classification", ()),
    ("summarization", (*SUMMARIZE_FAST, "generation.num_beams=1", "generation.max_new_tokens=8")),
])
def test_task_presets_run_their_sweeps(tmp_path, preset, overrides):
    assert run_sweep(tmp_path, preset, "hydra.sweeper.n_trials=2", *overrides) == 0
    study, _ = load_study(str(study_dir(tmp_path)))
    trials = study.get_trials()
    # the pruning presets may stop the second trial at its first evaluation; the first always finishes
    second = (TrialState.COMPLETE, TrialState.PRUNED) if preset in PRUNING_PRESETS else (TrialState.COMPLETE,)
    assert trials[0].state == TrialState.COMPLETE and trials[1].state in second
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 2
    metric = json.loads((study_dir(tmp_path) / "best.json").read_text())["metric"]
    for t in (t for t in trials if t.state == TrialState.COMPLETE):
        assert json.loads((Path(t.user_attrs[RUN_DIR]) / "metrics.json").read_text())[metric] == t.value


@pytest.mark.slow
def test_generation_sweep_decodes_a_trained_model_without_training(tmp_path, compose_run):
    from nlpexp.pipeline import run

    trained = tmp_path / "trained"
    run(compose_run("task=summarization", "data=dialogsum", "debug=smoke", "logger=none", *SUMMARIZE_FAST,
                    "generation.num_beams=1", "generation.max_new_tokens=8", run_dir=trained))
    assert run_sweep(tmp_path, "summarization_generation", "hydra.sweeper.n_trials=2", *SUMMARIZE_FAST,
                     f"model.name_or_path={trained / 'best_model'}") == 0
    study, _ = load_study(str(study_dir(tmp_path)))
    for t in study.get_trials():
        assert t.state == TrialState.COMPLETE and set(t.params) >= {"generation.num_beams", "generation.max_new_tokens"}
        run_dir = Path(t.user_attrs[RUN_DIR])
        assert (run_dir / "metrics.json").is_file() and not list(run_dir.glob("checkpoints/checkpoint-*"))  # eval


@pytest.mark.slow
def test_model_comparison_sweeps_the_model_group(tmp_path):
    # model= on the command line replaces the preset's choice (bert and modernbert need the hub)
    assert run_sweep(tmp_path, "model_comparison", "model=choice(tiny_bert, minilm)") == 0
    study, _ = load_study(str(study_dir(tmp_path)))
    assert sorted(t.params["model"] for t in study.get_trials()) == ["minilm", "tiny_bert"]
    assert all(t.state == TrialState.COMPLETE for t in study.get_trials())


@pytest.mark.slow
def test_parallel_launcher_runs_trials_at_once_in_worker_processes(tmp_path):
    assert run_sweep(tmp_path, "sbert_nli", "hydra.sweeper.n_trials=2", "hydra/launcher=parallel",
                     "hydra.launcher.n_jobs=2", *RUN_TO_THE_END) == 0
    study, _ = load_study(str(study_dir(tmp_path)))
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert all(len(t.intermediate_values) == 2 for t in trials)  # the workers found the study too
    starts = sorted(t.datetime_start for t in trials)
    assert starts[1] < min(t.datetime_complete for t in trials)  # both ran at once


@pytest.mark.slow
def test_a_killed_sweep_resumes_to_exactly_n_trials(tmp_path):
    args = ("hydra.sweeper.n_trials=4", "hydra/sweeper/sampler=random", *RUN_TO_THE_END)
    first = start_sweep(tmp_path, "sbert_nli", *args, log=tmp_path / "first.log")
    try:
        _wait_for(lambda: _states(tmp_path).count(TrialState.COMPLETE) >= 2
                  and TrialState.RUNNING in _states(tmp_path), first, tmp_path / "first.log")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert _states(tmp_path).count(TrialState.RUNNING) == 1  # killed mid-trial

    assert run_sweep(tmp_path, "sbert_nli", *args) == 0
    study, _ = load_study(str(study_dir(tmp_path)))
    trials = study.get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == len(counted(trials)) == 4
    (killed,) = [t for t in trials if t.state == TrialState.FAIL]
    assert note(killed).startswith("interrupted")
    (retry,) = [t for t in complete if t.system_attrs.get("failed_trial") == killed.number]
    assert retry.params == killed.params  # the killed trial's params ran again, once
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 4  # nothing else drawn twice
    assert all((study_dir(tmp_path) / str(t.number) / "metrics.json").is_file() for t in complete)


@pytest.mark.slow
def test_two_sweep_processes_share_one_study(tmp_path):
    args = ("hydra.sweeper.n_trials=4", "hydra/sweeper/sampler=random", *RUN_TO_THE_END)
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    workers = [start_sweep(tmp_path, "sbert_nli", *args, log=log) for log in logs]
    codes = [worker.wait(timeout=600) for worker in workers]
    outputs = [log.read_text() for log in logs]
    assert codes == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    ran = [{int(n) for n in TRIAL_LINE.findall(out)} for out in outputs]
    assert not ran[0] & ran[1]  # no trial ran twice
    study, _ = load_study(str(study_dir(tmp_path)))
    complete = {t.number for t in study.get_trials() if t.state == TrialState.COMPLETE}
    assert len(complete) == len(counted(study.get_trials())) == 4 and ran[0] | ran[1] == complete


def _states(root: Path) -> list:
    if not (root / "multirun").is_dir() or not any((root / "multirun").glob("*/study.json")):
        return []
    return [t.state for t in load_study(str(study_dir(root)))[0].get_trials()]


def _wait_for(condition, process: subprocess.Popen, log: Path, timeout: float = 400) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the sweep ended first:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.2)
