"""Several processes training one run (torchrun): one shared run dir, rank 0 alone records, DDP really on."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from omegaconf import OmegaConf

from nlpexp.boundary import exit_on_error
from nlpexp.config import PROJECT_ROOT
from nlpexp.io import read_ledger
from nlpexp.pipeline import run

# Wraps run.py: after every optimizer step each process appends to weights-<rank>.txt beside this script a
# checksum of all it trains (the model and the loss's own parameters, such as the SBERT-NLI head), so the test
# can see that the processes train as one. A file each: lines the processes print to one pipe can interleave.
WEIGHTS_REPORTER = """
import os, runpy, sys
from pathlib import Path
from transformers import TrainerCallback
from nlpexp.task import Task

REPORT = Path(__file__).with_name(f"weights-{os.environ['RANK']}.txt")

class ReportWeights(TrainerCallback):
    def __init__(self, task):
        self.task = task

    def on_step_end(self, args, state, control, **kwargs):
        checksum = sum(float(p.detach().double().abs().sum()) for p in self.task.loss.parameters())
        with REPORT.open("a") as f:
            f.write(f"{state.global_step} {checksum!r}\\n")

callbacks = Task.training_callbacks
Task.training_callbacks = lambda self: [*callbacks(self), ReportWeights(self)]
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize("argv", [["task=embedding"], ["-m", "task=embedding", "hydra.run.dir=/tmp/D"]])
def test_several_processes_need_one_named_run_dir_and_no_sweep(monkeypatch, capsys, argv):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit) as exit_info:
        exit_on_error(lambda: None, argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: 2 processes") and len(error.splitlines()) == 1


@pytest.mark.parametrize("world_size", ["1", "2"])
def test_a_shared_run_dir_passes(monkeypatch, tmp_path, world_size):
    monkeypatch.setenv("WORLD_SIZE", world_size)
    exit_on_error(lambda: None, ["task=embedding", f"hydra.run.dir={tmp_path}"])


@pytest.mark.parametrize("loss", ["mnrl", "cached_mnrl"])
def test_in_batch_negatives_are_gathered_across_processes_only_when_there_are_several(compose_run, monkeypatch,
                                                                                    loss):
    alone = OmegaConf.to_container(compose_run("task=embedding", f"loss={loss}").loss, resolve=True)
    monkeypatch.setenv("WORLD_SIZE", "2")
    together = OmegaConf.to_container(compose_run("task=embedding", f"loss={loss}").loss, resolve=True)
    assert alone["gather_across_devices"] is False and together["gather_across_devices"] is True


def test_a_process_other_than_rank_0_records_nothing(compose_run, monkeypatch, tmp_path):
    monkeypatch.setenv("RANK", "1")
    metrics = run(compose_run("task=embedding", "model=tiny_bert", "debug=smoke", "logger=tensorboard", "mode=eval"))
    assert "val/spearman_cosine" in metrics  # it evaluates all the same
    assert not (tmp_path / "run").exists() and not (tmp_path / "ledger.jsonl").exists()


def torchrun(*args: str, cwd) -> subprocess.CompletedProcess:
    (cwd / "report_weights.py").write_text(WEIGHTS_REPORTER)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(cwd / "report_weights.py"), str(PROJECT_ROOT / "run.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.mark.slow
@pytest.mark.parametrize("task", ["embedding", "sbert_nli"])
def test_two_processes_train_one_run_that_rank_0_records(tmp_path, task):
    from sentence_transformers import SentenceTransformer

    run_dir, ledger_file = tmp_path / "D", tmp_path / "ledger.jsonl"
    done = torchrun(f"task={task}", "model=tiny_bert", "debug=smoke", "logger=tensorboard",
                    f"hydra.run.dir={run_dir}", f"paths.ledger_file={ledger_file}", cwd=tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]

    # DDP: both processes hold the same weights after every step, in a process group of two
    rank_0, rank_1 = ((tmp_path / f"weights-{rank}.txt").read_text().splitlines() for rank in (0, 1))
    assert rank_0 and rank_0 == rank_1
    assert json.loads((run_dir / "provenance.json").read_text())["device"]["world_size"] == 2

    # recorded once, by rank 0
    records = read_ledger(ledger_file)
    assert len(records) == 1 and records[0]["status"] == "ok" and records[0]["run_dir"] == str(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics == records[0]["metrics"] and "val/spearman_cosine" in metrics
    event_files = list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert event_files and len({f.name.split(".")[-2] for f in event_files}) == 1  # one writer process (its pid)
    assert (run_dir / "run.log").read_text().count("per optimizer step") == 1  # each process logs it once
    if task == "embedding":  # MNRL: in-batch negatives from both processes' batches
        assert yaml.safe_load((run_dir / "config.yaml").read_text())["loss"]["gather_across_devices"] is True
    assert SentenceTransformer(str(run_dir / "best_model"), local_files_only=True).encode(["A man."]).shape[0] == 1
