"""Every setting takes effect or is refused (issue 28): each key of the schema changes what the run builds or is
refused (tests/test_every_key_takes_effect.py); epochs vs steps; debug=smoke keeps the model; sweep and flag guidance;
writes stay where the user pointed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from nlpexp import NlpexpError
from nlpexp.config import PROJECT_ROOT, compose
from tests import forkserver

# --- 1. epochs vs steps -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, epochs, steps", [
    ([], None, 250),                                          # make run: the short main job
    (["trainer.max_epochs=2"], 2, -1),                        # issue 28: 250 steps won before
    (["trainer.max_steps=7"], None, 7),
    (["experiment=imdb"], 5, -1),                             # a preset that trains by epochs
    (["experiment=imdb", "trainer.max_steps=9"], None, 9),    # the user's steps win over the preset's epochs
    (["experiment=summarization_dialogsum", "trainer.max_epochs=1"], 1, -1),
    (["debug=smoke", "experiment=imdb"], None, 4),
    (["debug=smoke", "trainer.max_epochs=1"], 1, -1),
    (["trainer.max_epochs=3", "trainer.max_steps=-1"], 3, -1),
])
def test_whichever_of_epochs_and_steps_the_user_set_wins(overrides, epochs, steps):
    trainer = compose(["paths.output_dir=/x", *overrides]).trainer
    assert (trainer.max_epochs, trainer.max_steps) == (epochs, steps)


def test_both_epochs_and_steps_is_one_error_line():
    with pytest.raises(NlpexpError, match=r"trainer.max_epochs=2 and trainer.max_steps=100 both bound training"):
        compose(["paths.output_dir=/x", "trainer.max_epochs=2", "trainer.max_steps=100"])


@pytest.mark.parametrize("preset", sorted(p.stem for p in (PROJECT_ROOT / "experiments").glob("*.yaml")))
def test_every_preset_bounds_training_by_one_key(preset):
    """The convention the user's choice relies on: a config layer that sets one of the two unsets the other."""
    trainer = compose(["paths.output_dir=/x", f"experiment={preset}"]).trainer
    assert (trainer.max_epochs is None) != (trainer.max_steps == -1), (trainer.max_epochs, trainer.max_steps)


def test_epochs_on_the_command_line_train_by_epochs(tmp_path):
    """The issue's reproduction through run.py: 64 rows, batch 32, 2 epochs = 4 optimizer steps (not 250)."""
    done = _run_py("model=tiny_bert", "data.max_train_samples=64", "data.max_eval_samples=16", "trainer.max_epochs=2",
                   "trainer.batch_size=32", "trainer.evaluate_start=false", "logger=none",
                   f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 0, done.stderr[-2000:]
    state = json.loads(next((tmp_path / "run").rglob("trainer_state.json")).read_text())
    assert (state["max_steps"], state["num_train_epochs"]) == (4, 2)


# --- 2. debug=smoke keeps the model -------------------------------------------------------------------------------

def test_smoke_never_swaps_the_model():
    for model in sorted(p.stem for p in (PROJECT_ROOT / "conf" / "model").glob("*.yaml")):
        plain = compose(["paths.output_dir=/x", f"model={model}"]).model
        smoke = compose(["paths.output_dir=/x", f"model={model}", "debug=smoke"]).model
        assert (smoke.name, smoke.name_or_path, smoke.get("random_init")) == \
            (plain.name, plain.name_or_path, plain.get("random_init")), model


def test_a_hub_model_offline_under_smoke_names_the_tiny_one(tmp_path):
    done = _run_py("model=bert", "debug=smoke", f"hydra.run.dir={tmp_path / 'run'}", HF_HUB_OFFLINE="1")
    assert done.returncode == 2
    errors = [line for line in (done.stdout + done.stderr).splitlines() if "error:" in line]
    assert len(errors) == 1 and "model=tiny_bert" in errors[0], done.stderr[-2000:]


# --- 3. and 4. what to type instead --------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, expected", [
    (["hparams_search=sbert_nli"], "hparams_search=sbert_nli is a sweep preset: add -m"),
    (["optimizer.lr=1e-5,1e-4"], "is a sweep over 2 values: add -m"),
    (["optimizer.lr=interval(1e-5,1e-4)"], "is a sweep: add -m to run it with a study sweeper"),
    (["-m", "optimizer.lr=interval(1e-5,1e-4)"], "add hydra/sweeper=nlpexp"),
    (["model=minlm"], "model=minlm is not an option; did you mean model=minilm?"),
    (["trainer.lr=1e-4"], "trainer.lr is not a setting; did you mean optimizer.lr?"),
    (["trainer.max_epoch=3"], "did you mean trainer.max_epochs?"),
    (["--epochs", "5"], "run.py takes overrides, not flags: use trainer.max_epochs=5"),
    (["--batch_size=8"], "use trainer.batch_size=8"),
    (["--lr", "3e-5"], "use optimizer.lr=3e-5"),
    (["--mode", "eval"], "use mode=eval"),
    (["--train-data", "a.csv"], "use data=files data.train=a.csv"),
    (["--val-data", "b.jsonl"], "use data=files data.validation=b.jsonl"),
])
def test_habits_get_the_override_to_type(argv, expected, tmp_path, capsys):
    from nlpexp.boundary import exit_on_error

    run_py = _load_run_py()
    with pytest.raises(SystemExit) as exited:
        exit_on_error(run_py.main, [*argv, f"hydra.run.dir={tmp_path / 'run'}"], before=[run_py._security_gate])
    assert exited.value.code == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: ") and expected in errors[0], errors
    assert not (tmp_path / "run").exists()  # refused before Hydra made the run dir


def test_habit_errors_are_one_line_on_stderr(tmp_path):
    done = _run_py("--epochs", "5", "model=minlm")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: run.py takes overrides, not flags: use trainer.max_epochs=5 "
                                                "(instead of --epochs 5)"]


def test_a_missing_data_root_names_the_setting_used_and_comes_before_heavy_imports(tmp_path):
    probe = (f"import runpy, sys\nsys.argv = ['run.py', 'data.root=/no/such/dir', 'hydra.run.dir={tmp_path / 'r1'}']\n"
             f"try:\n    runpy.run_path({str(PROJECT_ROOT / 'run.py')!r}, run_name='__main__')\n"
             "except SystemExit as end:\n"
             "    print('exit', end.code, [m for m in ('torch', 'transformers') if m in sys.modules])\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=_env())
    assert done.stdout.strip().splitlines()[-1] == "exit 2 []"  # refused before torch or transformers was imported
    line = [ln for ln in (done.stdout + done.stderr).splitlines() if "error:" in ln][-1]
    assert "data.root=/no/such/dir" in line and "NLPEXP_DATA_DIR" not in line
    env = _run_py(f"hydra.run.dir={tmp_path / 'r2'}", NLPEXP_DATA_DIR="/no/where")
    assert "NLPEXP_DATA_DIR=/no/where" in [ln for ln in (env.stdout + env.stderr).splitlines() if "error:" in ln][-1]


def test_a_sweep_with_no_finished_trial_exits_non_zero(tmp_path):
    done = _run_py("-m", "hydra/sweeper=nlpexp", "model=tiny_bert", "debug=smoke", "logger=none",
                   "model.name_or_path=/no/such/model", "model.random_init=null", "optimizer.lr=choice(1e-5,2e-5)",
                   "hydra.sweeper.n_trials=2", "hydra.sweeper.failure_budget=1.0", "hydra.sweeper.plots=false",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert done.returncode == 2
    assert "no trial of study" in done.stderr + done.stdout


# --- 7. writes stay where the user pointed ------------------------------------------------------------------------

def test_the_ledger_of_a_run_pointed_elsewhere_goes_with_it(tmp_path, monkeypatch):
    runs = tmp_path / "checkout_outputs"
    done = _run_py("trainer.max_epochs=1", "trainer.max_steps=2", f"hydra.run.dir={tmp_path / 'exp' / 'a'}",
                   NLPEXP_RUNS_DIR=str(runs), NLPEXP_LEDGER_DIR=None)
    assert done.returncode == 2  # refused: the attempt still has its ledger line
    assert (tmp_path / "exp" / "ledger.jsonl").is_file() and not runs.exists()
    monkeypatch.delenv("NLPEXP_LEDGER_DIR")
    monkeypatch.setenv("NLPEXP_RUNS_DIR", str(runs))
    inside = compose([f"paths.output_dir={runs / '2026-01-01' / '10-00-00'}"])
    assert Path(inside.paths.ledger_file).parent == Path(inside.paths.runs_dir)


def test_a_preset_sweep_does_not_copy_its_best_model_by_default():
    cfg = compose(["paths.output_dir=/x", "hparams_search=sbert_nli"], with_hydra=True)
    assert cfg.hydra.sweeper.promote_best is False


def test_random_init_folders_of_dead_processes_are_removed(tmp_path):
    from nlpexp.model.weights import RANDOM_INIT_PREFIX, remove_orphans

    killed = subprocess.Popen([sys.executable, "-c", "import time, tempfile; tempfile.mkdtemp(prefix="
                               f"'{RANDOM_INIT_PREFIX}' + __import__('os').getpid().__str__() + '-', dir='{tmp_path}');"
                               "print('made', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert killed.stdout.readline().strip() == "made"
    alive = Path(tempfile.mkdtemp(prefix=f"{RANDOM_INIT_PREFIX}{os.getpid()}-", dir=tmp_path))
    orphan = next(p for p in tmp_path.iterdir() if p != alive)
    assert remove_orphans(str(tmp_path)) == []  # its process still runs
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert remove_orphans(str(tmp_path)) == [orphan]
    assert alive.is_dir() and not orphan.exists()


# --- helpers -------------------------------------------------------------------------------------------------------

def _load_run_py():
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_py", PROJECT_ROOT / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _env(**env: str | None) -> dict[str, str]:
    environment = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "src")}
    for name, value in env.items():
        environment.pop(name, None) if value is None else environment.__setitem__(name, value)
    return environment


def _run_py(*args: str, **env: str | None) -> subprocess.CompletedProcess:
    return forkserver.run([sys.executable, str(PROJECT_ROOT / "run.py"), *args], capture_output=True, text=True,
                          timeout=300, env=_env(**env))
