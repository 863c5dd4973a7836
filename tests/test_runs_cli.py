"""`nlpexp runs` and `nlpexp registry` as a user meets them: exact filters, clear errors, pipes that close early."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nlpexp import NlpexpError, registry, runs
from nlpexp.io import append_to_ledger
from nlpexp.pipeline import run

SMOKE = ["task=sbert_nli", "model=tiny_bert", "debug=smoke", "logger=none"]


def _record(run_id, sweep_dir=None, task="SbertNliTask", status="ok", **extra):
    return {"run_id": run_id, "status": status, "mode": "train", "task": task, "model": "tiny_bert",
            "data": "allnli", "start": "2026-11-30T00:00:00+00:00", "run_dir": f"/r/{run_id}",
            "sweep_dir": sweep_dir, "metrics": {"val/acc": 0.5}, **extra}


@pytest.fixture
def ledger_file(tmp_path):
    path = tmp_path / "ledger.jsonl"
    sweeps = tmp_path / "multirun"
    for record in (_record("a1", str(sweeps / "A")), _record("a2", str(sweeps / "A2")),
                   _record("c1", task="ClassificationTask", status="failed", error="data.name: no such file"),
                   _record("s1")):
        append_to_ledger(path, record)
    return path


def _ids(capsys) -> list[str]:
    lines = capsys.readouterr().out.splitlines()
    return [line.split()[0] for line in lines[1:]]


def test_sweep_matches_the_sweep_dir_exactly(ledger_file, capsys):
    assert runs.main(["--ledger", str(ledger_file), "--sweep", str(ledger_file.parent / "multirun" / "A")]) == 0
    assert _ids(capsys) == ["a1"]


def test_task_takes_the_option_name_or_the_class(ledger_file, capsys):
    runs.main(["--ledger", str(ledger_file), "--task", "classification"])
    assert _ids(capsys) == ["c1"]
    runs.main(["--ledger", str(ledger_file), "--task", "SbertNliTask"])
    assert _ids(capsys) == ["a1", "a2", "s1"]


def test_mode_and_error_columns_say_why_a_run_failed(ledger_file, capsys):
    runs.main(["--ledger", str(ledger_file), "--status", "failed", "--format", "csv"])
    header, row = capsys.readouterr().out.strip().splitlines()
    assert {"mode", "error"} <= set(header.split(","))
    assert dict(zip(header.split(","), row.split(","), strict=True))["error"] == "data.name: no such file"


def test_an_unknown_sort_metric_is_one_error_line_listing_the_metrics(ledger_file, capsys):
    assert runs.main(["--ledger", str(ledger_file), "--sort", "val/nope"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.strip().splitlines() == [
        "error: no run here has the metric 'val/nope'; metrics: val/acc"]


def test_the_default_ledger_is_the_configured_one(tmp_path, monkeypatch, capsys):
    path = tmp_path / "elsewhere" / "ledger.jsonl"
    append_to_ledger(path, _record("e1"))
    monkeypatch.setenv("NLPEXP_LEDGER_DIR", str(path.parent))
    runs.main([])
    assert _ids(capsys) == ["e1"]


def _cli(*args, env_extra=None) -> subprocess.CompletedProcess:
    code = "import sys; from nlpexp.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(f"{sys.executable} -c '{code}' {' '.join(args)} | head -n 1", shell=True,
                          capture_output=True, text=True, env={**os.environ, **(env_extra or {})}, timeout=120)


def test_a_pipe_closed_early_ends_quietly(tmp_path):
    path = tmp_path / "ledger.jsonl"
    path.write_text("".join(json.dumps(_record(f"r{i}")) + "\n" for i in range(3000)))  # > a pipe buffer
    done = _cli("runs", "--ledger", str(path))
    assert done.stdout.startswith("run_id") and done.stderr == ""
    folder = tmp_path / "registry" / "big" / "v1"
    folder.mkdir(parents=True)
    (folder / "source.json").write_text(json.dumps({"run_dir": "x"}))
    (folder / "metrics.json").write_text(json.dumps({f"val/m{i}": i for i in range(5000)}))
    done = _cli("registry", "--root", str(tmp_path / "registry"), "show", "big@v1")
    assert done.stdout.strip() == "{" and done.stderr == ""


def test_an_eval_only_run_registers_the_model_it_evaluated(compose_run, tmp_path):
    evaluated = tmp_path / "evaluated"
    metrics = run(compose_run("model=minilm", "debug=smoke", "logger=none", "mode=eval", run_dir=evaluated))
    version = registry.register(evaluated, "minilm", tmp_path / "reg")
    assert json.loads((version / "metrics.json").read_text()) == metrics
    assert (version / "model" / "modules.json").is_file()
    # the same run had it evaluated a random-init model: nothing to register, and it says so
    config = evaluated / "config.yaml"
    config.write_text(config.read_text().replace("name_or_path: bundled:all-MiniLM-L6-v2", "name_or_path: null"))
    with pytest.raises(NlpexpError, match="eval-only run of model 'minilm', which is a random-init model"):
        registry.register(evaluated, "random", tmp_path / "reg")


def test_run_py_help_into_a_closed_pipe_ends_quietly():
    from nlpexp.config import PROJECT_ROOT

    done = subprocess.run(f"set -o pipefail; {sys.executable} {PROJECT_ROOT / 'run.py'} --help | head -n 1",
                          shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (0, "") and done.stdout.startswith("nlpexp")
