"""The user's files (ledger, registry, cache, run and sweep dirs) stay out of reach of the tests, whatever a test
forgets; every tool takes its default locations from the composed `paths` group, NLPEXP_* variables included."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

from nlpexp import NlpexpError, registry, runs, tb
from nlpexp.api import train
from nlpexp.config import PROJECT_ROOT, compose, default_paths
from nlpexp.pipeline import build_task, run
from nlpexp.sweep.__main__ import main as sweep_main
from tests import forkserver

# variable -> the folder of tmp_path it points to in `elsewhere`
VARIABLES = {"NLPEXP_RUNS_DIR": "runs", "NLPEXP_SWEEPS_DIR": "sweeps", "NLPEXP_LEDGER_DIR": "ledger",
             "NLPEXP_REGISTRY_DIR": "registry"}
USER_DIRS = ("runs_dir", "sweeps_dir", "ledger_file", "registry_dir", "cache_dir")


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    for variable, folder in VARIABLES.items():
        monkeypatch.setenv(variable, str(tmp_path / folder))
    return tmp_path


def test_default_paths_honour_the_environment(elsewhere):
    paths = default_paths()
    assert (paths["runs_dir"], paths["sweeps_dir"]) == (str(elsewhere / "runs"), str(elsewhere / "sweeps"))
    assert (paths["ledger_file"], paths["registry_dir"]) == (str(elsewhere / "ledger" / "ledger.jsonl"),
                                                            str(elsewhere / "registry"))
    assert "output_dir" not in paths  # a run's own, not a tool's default


def test_run_and_sweep_dirs_follow_the_paths_group(elsewhere):
    cfg = compose(["paths.output_dir=unused", "hparams_search=classification", "task=classification",
                   "data=imdb", "paths.sweeps_dir=/sweeps/here"], with_hydra=True)
    assert cfg.hydra.run.dir.startswith(str(elsewhere / "runs") + "/")
    assert cfg.hydra.sweep.dir.startswith("/sweeps/here/")
    sweeper = cfg.hydra.sweeper
    assert (sweeper.studies_dir, sweeper.registry_dir) == ("/sweeps/here", str(elsewhere / "registry"))


def test_the_ledger_value_keeps_its_jsonl_suffix_as_written():
    """NLPEXP_LEDGER_DIR names a folder; the file name stays in the config (a file may not set paths.* at all:
    nlpexp.file_keys)."""
    cfg = compose(["paths.output_dir=unused"])
    assert cfg.paths._get_node("ledger_file")._value().endswith("/ledger.jsonl")


def test_the_suite_points_every_user_path_into_tmp():
    """conftest's session-wide variables: a run() with no paths.ledger_file override lands in tmp."""
    paths = default_paths()
    for key in USER_DIRS:
        assert not paths[key].startswith(str(PROJECT_ROOT)), key
        assert not paths[key].startswith(os.path.expanduser("~/.cache")), key


def test_without_the_variables_the_paths_are_the_projects():
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    code = "from nlpexp.config import default_paths; p = default_paths(); " \
           "print(*(p[k] for k in ('runs_dir', 'sweeps_dir', 'ledger_file', 'registry_dir')))"
    out = forkserver.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [str(PROJECT_ROOT / "outputs"), str(PROJECT_ROOT / "multirun"),
                           str(PROJECT_ROOT / "outputs" / "ledger.jsonl"), str(PROJECT_ROOT / "models")]


def _finished_run(folder):
    (folder / "best_model").mkdir(parents=True)
    (folder / "best_model" / "weights").write_text("w")
    (folder / "metrics.json").write_text(json.dumps({"val/acc": 0.5}))
    return folder


def test_every_tool_defaults_to_the_configured_places(elsewhere, capsys, caplog, monkeypatch):
    version = registry.register(_finished_run(elsewhere / "run"), "mine", registry.registry_dir())
    assert version == elsewhere / "registry" / "mine" / "v1"
    assert registry.main(["list"]) == 0 and capsys.readouterr().out == "mine: v1\n"

    (elsewhere / "runs" / "a").mkdir(parents=True)
    (elsewhere / "runs" / "a" / "events.out.tfevents.1").write_bytes(b"")
    assert tb.main(["list"]) == 0 and capsys.readouterr().out.startswith(f"{elsewhere / 'runs' / 'a'}\n")
    served = []
    monkeypatch.setattr(tb.os, "execv", lambda program, cmd: served.append(cmd))  # not become TensorBoard here
    tb.main(["serve"])
    capsys.readouterr()
    assert served[0][4] == f"runs:{elsewhere / 'runs'}"  # sweeps/ does not exist yet: left out

    assert sweep_main(["summary"]) == 2
    assert f"error: no study under {elsewhere / 'sweeps'}:" in caplog.text

    with pytest.raises(NlpexpError):  # fails its checks, after opening its run.log where run.py would have
        train(["seed=-1"])
    [log] = (elsewhere / "runs").glob("*/*/run.log")
    assert runs.main([]) == 0 and str(log.parent) in capsys.readouterr().out  # its ledger line, in $NLPEXP_LEDGER_DIR


def test_no_tool_writes_under_the_checkout_when_the_variables_point_elsewhere(elsewhere, capsys, monkeypatch):
    def checkout_state():
        return sorted((str(p), p.stat().st_mtime_ns) for d in ("outputs", "multirun", "models")
                      for p in [PROJECT_ROOT / d, *(PROJECT_ROOT / d).rglob("*")] if p.exists())

    before = checkout_state()
    monkeypatch.chdir(PROJECT_ROOT)  # not even from the checkout itself
    registry.main(["register", str(_finished_run(elsewhere / "run")), "--name", "mine"])
    with pytest.raises(NlpexpError):
        train(["seed=-1"])
    for command in (lambda: runs.main([]), lambda: tb.main(["list"]), lambda: sweep_main(["summary"])):
        command()
    assert checkout_state() == before
    assert (elsewhere / "registry" / "mine" / "v1").is_dir() and list((elsewhere / "runs").rglob("run.log"))


def test_a_run_looks_up_registry_models_in_its_own_paths_registry_dir(tmp_path):
    """run.py resolves `registry:<name>` inside its Hydra job: with the job's overrides, not just the defaults."""
    done = forkserver.run([sys.executable, str(PROJECT_ROOT / "run.py"), "mode=eval", "model=tiny_bert", "debug=smoke",
                           "model.name_or_path=registry:nope", "logger=none", f"hydra.run.dir={tmp_path / 'run'}",
                           f"paths.registry_dir={tmp_path / 'mine'}"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert f"error: registry has no model 'nope' in {tmp_path / 'mine'};" in done.stderr + done.stdout


def test_an_in_process_run_looks_up_registry_models_in_its_own_paths_registry_dir(compose_run, tmp_path):
    """The same without run.py (tests, nlpexp.api.train): the composed config's registry, not the defaults'."""
    registry.register(_finished_run(tmp_path / "run"), "mine", root=tmp_path / "mine")
    with pytest.raises(NlpexpError, match=f"registry has no model 'nope' in {tmp_path / 'mine'};"):
        run(compose_run("mode=eval", "model=tiny_bert", "debug=smoke", "model.name_or_path=registry:nope",
                        f"paths.registry_dir={tmp_path / 'mine'}"))
    cfg = compose_run("mode=eval", "model=tiny_bert", f"paths.registry_dir={tmp_path / 'mine'}",
                      "model.name_or_path=registry:mine")
    assert build_task(cfg).model_spec.name_or_path == str(tmp_path / "mine" / "mine" / "v1" / "model")


@pytest.mark.parametrize("command", [["runs"], ["registry", "list"], ["tb", "list"]])
def test_without_a_config_every_tool_says_so_in_one_line(command, tmp_path, monkeypatch, capsys):
    """A non-editable install without NLPEXP_ROOT finds no conf/: the tools cannot know their default paths."""
    from nlpexp import cli

    monkeypatch.setenv("NLPEXP_ROOT", str(tmp_path))
    assert cli.main(command) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: no nlpexp config at {tmp_path / 'conf'}: install the "
                                                    "checkout editable (pip install -e <checkout>) or set "
                                                    "NLPEXP_ROOT=<checkout>"]


def test_run_py_runs_its_own_checkout_from_a_non_editable_install(tmp_path):
    """The package copied elsewhere (as `pip install .` does: no conf/ beside it), started from another directory:
    run.py still composes its checkout's conf/ and presets."""
    site = tmp_path / "site"
    for package in ("nlpexp", "hydra_plugins"):
        shutil.copytree(PROJECT_ROOT / "src" / package, site / package, ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "NLPEXP_ROOT"} | {"PYTHONPATH": str(site)}
    where = forkserver.run([sys.executable, "-c", "import nlpexp.config as c; print(c.PROJECT_ROOT)"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert where == str(tmp_path)  # the copy, not the checkout: this is what a non-editable install sees
    done = forkserver.run([sys.executable, str(PROJECT_ROOT / "run.py"), "--cfg", "job", "experiment=imdb",
                           "model=bert"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "name: bert" in done.stdout and "name: imdb" in done.stdout
