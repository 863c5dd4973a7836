"""Secrets stay out of every store, and what nlpexp copies or resolves is what it checked (issue 26, items 4-5).

- A secret's value is taken when the process starts: a command line whose `hydra.job.env_set` copies the token
  into an innocent name and overwrites the original variable no longer launders it (grep -a of the run dir,
  the ledger).
- The Optuna storage redacts at its boundary: `+db_password=...` on a sweep's command line is nowhere in
  optuna.db (study definition, trial user attrs), nor in the sweep dir or the ledger.
- The registry copies no symlink (best_model/ itself or a file in it) and resolves no version with a symlink
  at any depth.
(Damaged checkpoints and the resume identity: tests/test_resume.py.)
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from nlpexp import NlpexpError, registry
from nlpexp.config import PROJECT_ROOT
from tests import forkserver

RUN_PY = str(PROJECT_ROOT / "run.py")
TOKEN = "ghp_planted_launder_0123456789abcdef"
DB_PASSWORD = "planted-db-password-on-the-command-line-4242"
SMOKE = ["task=sbert_nli", "model=tiny_bert", "debug=smoke", "logger=none"]


def _run_py(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    return forkserver.run([sys.executable, RUN_PY, *args], capture_output=True, text=True, timeout=600, cwd=cwd,
                          env=env)


def _files_holding(root: Path, value: str) -> list[str]:
    """grep -a -r: every file under `root` whose bytes hold `value`."""
    return [str(p) for p in root.rglob("*") if p.is_file() and value.encode() in p.read_bytes()]


def test_env_set_on_the_command_line_cannot_launder_a_token(tmp_path):
    """COPY takes the token, GITHUB_TOKEN becomes harmless, a config key reads COPY: the value was taken at start."""
    done = _run_py([*SMOKE, f"hydra.run.dir={tmp_path / 'run'}", f"paths.ledger_file={tmp_path / 'ledger.jsonl'}",
                    "+hydra.job.env_set.COPY=${oc.env:GITHUB_TOKEN}", "+hydra.job.env_set.GITHUB_TOKEN=harmless",
                    "+note=${oc.env:COPY}"], tmp_path, env={"GITHUB_TOKEN": TOKEN})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "run" / "config.yaml").is_file() and (tmp_path / "ledger.jsonl").is_file()
    assert _files_holding(tmp_path, TOKEN) == []
    assert TOKEN not in done.stdout + done.stderr
    assert "note: <redacted>" in (tmp_path / "run" / "config.yaml").read_text()  # it did reach the config


def test_a_secret_taken_at_start_survives_a_later_environment():
    from nlpexp import redaction

    redaction.take_secrets({"PLANTED_LATER_TOKEN": "planted-value-taken-once-99"})
    os.environ.pop("PLANTED_LATER_TOKEN", None)  # (never set there: what counts is what was taken)
    assert redaction.redact_text("x planted-value-taken-once-99 y") == "x <redacted> y"


SWEEP = ("hydra.sweeper.n_trials=2", "hydra/sweeper/sampler=random", f"+db_password={DB_PASSWORD}")


@pytest.fixture(scope="module")
def password_sweep(tmp_path_factory, data_root):
    """A 2-trial tiny sweep with a password on its command line (a fixed param: a trial user attr upstream),
    run by run.py's main in this process (tests/test_sweep.py)."""
    from tests.test_sweep import run_sweep

    root = tmp_path_factory.mktemp("sweep")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NLPEXP_DATA_DIR", str(data_root))
        assert run_sweep(root, "sbert_nli", *SWEEP) == 0
    return root


def test_optuna_db_holds_no_password_from_the_command_line(password_sweep, capsys):
    root = password_sweep
    (database,) = root.rglob("optuna.db")
    with sqlite3.connect(database) as db:
        trials = db.execute("select count(*) from trials").fetchone()[0]
        attrs = [row for table in ("study_user_attributes", "study_system_attributes", "trial_user_attributes",
                                   "trial_system_attributes")
                 for row in db.execute(f"select key, value_json from {table}")]  # noqa: S608 (fixed names)
    assert trials == 2
    assert _files_holding(root, DB_PASSWORD) == []  # optuna.db, the trials' dirs, summaries, the ledger
    definition = json.loads(dict(attrs)["definition"])
    assert "+db_password=<redacted>" in definition["arguments"]  # what the study was started with, redacted
    fixed = [json.loads(value) for key, value in attrs if key.lstrip("+") == "db_password"]
    assert fixed and set(fixed) == {"<redacted>"}  # the trials' fixed param, as the official sweeper records it


def test_a_rerun_of_the_sweep_resumes_its_study(password_sweep):
    """The definition is compared as stored (redacted): the same command finds its study, finished (a definition
    that differed would be refused, exit 2), and runs no trial."""
    from tests.test_sweep import run_sweep

    assert run_sweep(password_sweep, "sbert_nli", *SWEEP) == 0
    (database,) = password_sweep.rglob("optuna.db")
    with sqlite3.connect(database) as db:
        assert db.execute("select count(*) from studies").fetchone()[0] == 1
        assert db.execute("select count(*) from trials").fetchone()[0] == 2


# ---- the registry: no symlink copied, none resolved ----

@pytest.fixture
def finished_run(tmp_path) -> Path:
    """What register reads of a finished run: best_model/, metrics.json, config.yaml."""
    run = tmp_path / "run"
    (run / "best_model").mkdir(parents=True)
    (run / "best_model" / "model.safetensors").write_bytes(b"weights")
    (run / "metrics.json").write_text(json.dumps({"val/spearman_cosine": 0.5}))
    (run / "config.yaml").write_text("optimized_metric: val/spearman_cosine\n")
    return run


@pytest.fixture
def secret_dir(tmp_path) -> Path:
    """Stands for ~/.ssh."""
    folder = tmp_path / "ssh"
    folder.mkdir()
    (folder / "id_rsa").write_text("PLANTED PRIVATE KEY")
    return folder


def _register_refused(run: Path, root: Path, capsys) -> str:
    assert registry.main(["--root", str(root), "register", str(run), "--name", "m"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1 and captured.err.startswith("error: ")
    assert not (root / "m").exists() or not any((root / "m").iterdir()), "nothing copied"
    return captured.err


def test_register_refuses_a_symlinked_best_model(finished_run, secret_dir, tmp_path, capsys):
    import shutil

    shutil.rmtree(finished_run / "best_model")
    (finished_run / "best_model").symlink_to(secret_dir)
    error = _register_refused(finished_run, tmp_path / "registry", capsys)
    assert f"{finished_run / 'best_model'} is a symlink" in error


def test_register_refuses_a_symlinked_file_inside_best_model(finished_run, secret_dir, tmp_path, capsys):
    (finished_run / "best_model" / "tokenizer.json").symlink_to(secret_dir / "id_rsa")
    error = _register_refused(finished_run, tmp_path / "registry", capsys)
    assert "tokenizer.json is a symlink" in error


def test_register_refuses_symlinked_metrics_or_config(finished_run, secret_dir, tmp_path, capsys):
    for name in ("metrics.json", "config.yaml"):
        original = (finished_run / name).read_bytes()
        (finished_run / name).unlink()
        (finished_run / name).symlink_to(secret_dir / "id_rsa")
        assert f"{name} is a symlink" in _register_refused(finished_run, tmp_path / "registry", capsys)
        (finished_run / name).unlink()
        (finished_run / name).write_bytes(original)
    assert registry.register(finished_run, "m", tmp_path / "registry").name == "v1"  # and without links it works


@pytest.mark.parametrize("planted", ["version", "model", "file", "nested"])
def test_a_symlink_at_any_depth_of_a_registry_version_is_refused(planted, finished_run, secret_dir, tmp_path,
                                                                  capsys):
    root = tmp_path / "registry"
    registry.register(finished_run, "m", root)
    if planted == "version":  # registry/m/v2 -> outside: @v2 and @latest
        (root / "m" / "v2").symlink_to(secret_dir)
    else:
        v2 = registry.register(finished_run, "m", root)
        where = {"model": v2 / "model", "file": v2 / "model" / "tokenizer.json",
                 "nested": v2 / "model" / "sub" / "deeper"}[planted]
        if planted == "model":
            import shutil

            shutil.rmtree(where)
        where.parent.mkdir(parents=True, exist_ok=True)
        where.symlink_to(secret_dir if planted != "file" else secret_dir / "id_rsa")
    for reference in ("registry:m@v2", "registry:m@latest", "registry:m@best"):
        with pytest.raises(NlpexpError, match="is a symlink"):
            registry.resolve(reference, root)
    assert registry.resolve("registry:m@v1", root) == root / "m" / "v1" / "model"
    assert registry.main(["--root", str(root), "show", "m@v2"]) == 2
    captured = capsys.readouterr()
    assert len(captured.err.splitlines()) == 1 and captured.err.startswith("error: ") and "PLANTED" not in \
        captured.out + captured.err

