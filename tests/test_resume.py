"""Exact resume: a run SIGKILLed at any moment, rerun with trainer.resume=true, ends with the metrics of a run
that was never interrupted (to 1e-6, train/mean_loss included); checkpoints are whole or absent.

The kills are real SIGKILLs (no finally block, no atexit), placed exactly by _place_kill (a trainer callback and
two wrapped task methods, nothing in nlpexp itself) in a child process forked from this one (so it pays no second
import of torch); the resumed runs and the one uninterrupted reference run are in-process. 4 steps, checkpoints
at 2 and 4 (debug=smoke).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal

import pytest

from nlpexp import NlpexpError
from nlpexp.io import read_ledger
from nlpexp.pipeline import run
from nlpexp.tb import read_tags
from nlpexp.trainer.checkpoints import SEAL, check_identity, newest_complete, read_seal

ARGS = ("task=sbert_nli", "model=tiny_bert", "debug=smoke", "logger=tensorboard", "logger.tensorboard.histograms=false")
TIMINGS = ("time/", "train/runtime_s", "train/samples_per_second", "train/eval_runtime_s")
# Where a kill lands (see _place_kill), and the checkpoint resume then starts from.
KILLS = {
    "setup": None,                    # data and model loaded, no step taken
    "step:2": None,                   # mid-step, before the first checkpoint (step 1 logged)
    "step:3": "checkpoint-2",         # mid-step, after one
    "save:4": "checkpoint-2",         # checkpoint-4's files written, its seal not: it is not a checkpoint
    "evaluate_validation": "checkpoint-4",  # training done, final evaluation under way
}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_root):
    """The uninterrupted run (its dir, its metrics), shared by every case."""
    from nlpexp.config import compose

    out = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NLPEXP_DATA_DIR", str(data_root))
        return out / "run", run(compose([f"paths.output_dir={out / 'run'}", f"paths.ledger_file={out / 'ledger.jsonl'}",
                                         *ARGS]))


@pytest.fixture(scope="module")
def reference(uninterrupted):
    return uninterrupted[1]


def _place_kill(point: str) -> None:
    """SIGKILL this process at `point`: `setup` (done), `step:N` (after its backward pass, before the optimizer
    step), `save:N` (checkpoint-N's files written, its seal not: the sealing callback comes last) or
    `evaluate_validation` (done). Only ever called in the forked child, whose patches die with it."""
    from transformers import TrainerCallback

    from nlpexp.task import Task
    from nlpexp.task.sbert_nli import SbertNliTask

    name, _, step = point.partition(":")

    def kill_if(reached: bool) -> None:
        if reached:
            os.kill(os.getpid(), signal.SIGKILL)

    class KillAt(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            kill_if(name == "step" and state.global_step + 1 == int(step))

        def on_save(self, args, state, control, **kwargs):
            kill_if(name == "save" and state.global_step == int(step))

    callbacks, setup, evaluate = Task.training_callbacks, SbertNliTask.setup, Task.evaluate
    Task.training_callbacks = lambda self: [*callbacks(self), KillAt()]
    SbertNliTask.setup = lambda self: (setup(self), kill_if(name == "setup"))[0]
    Task.evaluate = lambda self, role: (evaluate(self, role), kill_if(point == f"evaluate_{role}"))[0]


def _killed_run(cfg, point: str) -> None:
    """Run `cfg` in a forked child that SIGKILLs itself at `point`."""

    def child():
        _place_kill(point)
        try:
            run(cfg)
        finally:
            os._exit(3)  # reached only if the kill point was never hit

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(timeout=300)
    assert process.exitcode == -signal.SIGKILL, f"the run was not killed at {point} (exit {process.exitcode})"


def _comparable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.startswith(TIMINGS)}


@pytest.mark.parametrize("point", list(KILLS))
def test_a_run_killed_anywhere_resumes_to_the_uninterrupted_metrics(point, reference, compose_run, tmp_path,
                                                                     caplog):
    run_dir = tmp_path / "run"
    _killed_run(compose_run(*ARGS, run_dir=run_dir), point)
    assert not (run_dir / "metrics.json").exists()
    checkpoints = run_dir / "checkpoints"
    if point.startswith("save:"):  # the folder is there with every file but the seal
        assert (checkpoints / f"checkpoint-{point[5:]}" / "trainer_state.json").is_file()
        assert read_seal(checkpoints / f"checkpoint-{point[5:]}") is None

    with caplog.at_level("INFO", logger="nlpexp"):
        metrics = run(compose_run(*ARGS, "trainer.resume=true", run_dir=run_dir))
    expected_start = KILLS[point]
    if expected_start is None:
        assert "no complete checkpoint" in caplog.text and "starting over" in caplog.text
    else:
        assert f"resuming from {checkpoints / expected_start}" in caplog.text
    assert _comparable(metrics).keys() == _comparable(reference).keys()
    for key, value in _comparable(reference).items():
        assert metrics[key] == pytest.approx(value, abs=1e-6), key
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics
    assert all(read_seal(folder) for folder in checkpoints.glob("checkpoint-*"))  # no half checkpoint left
    batch_steps = [step for step, _ in read_tags(run_dir / "tensorboard")["train/loss"]]
    assert batch_steps == [1, 2, 3, 4]  # one continuous TensorBoard log, no step twice
    assert [r["status"] for r in read_ledger(tmp_path / "ledger.jsonl")] == ["ok"]  # a SIGKILL writes nothing


def test_a_torn_checkpoint_is_not_one(tmp_path):
    """Any file cut short or missing, or a seal that does not parse: not a checkpoint, and removed on resume."""
    from nlpexp.trainer.checkpoints import seal

    root = tmp_path / "checkpoints"
    for step in (2, 4, 6):
        folder = root / f"checkpoint-{step}"
        (folder / "sub").mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"x" * 100)
        (folder / "sub" / "config.json").write_text("{}")
        seal(folder, step, 1.0, {"task": "T"})
    (root / "checkpoint-6" / "model.safetensors").write_bytes(b"x" * 50)  # cut short
    (root / "checkpoint-4" / SEAL).write_text('{"files": ')  # torn seal
    assert newest_complete(root) == root / "checkpoint-2"
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint-2"]
    (root / "checkpoint-2" / "sub" / "config.json").unlink()
    assert newest_complete(root) is None


def test_resume_refuses_a_checkpoint_of_another_task(compose_run, tmp_path):
    """A classification checkpoint given to an sbert_nli run: one line naming what differs, nothing trained."""
    classification = tmp_path / "classification"
    run(compose_run("task=classification", "model=tiny_bert", "data=imdb", "debug=smoke", "logger=none",
                    run_dir=classification))
    checkpoint = classification / "checkpoints" / "checkpoint-2"
    with pytest.raises(NlpexpError, match=r"^trainer.resume: .*checkpoint-2 was trained with "
                                          r"task=ClassificationTask, .*this run has task=SbertNliTask, "):
        run(compose_run(*ARGS, f"trainer.resume={checkpoint}"))
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert read_ledger(tmp_path / "ledger.jsonl")[-1]["status"] == "failed"


def test_resume_refuses_a_folder_that_is_no_checkpoint(compose_run, tmp_path):
    with pytest.raises(NlpexpError, match="is not a complete nlpexp checkpoint"):
        run(compose_run(*ARGS, f"trainer.resume={tmp_path}"))


def test_a_damaged_checkpoint_is_set_aside_and_the_one_before_it_used(tmp_path, caplog):
    """Same-size bytes overwritten (the seal's sizes still match): the sha256 tells; the previous sealed one is
    taken, and with none left, nothing (the run starts over)."""
    from nlpexp.trainer.checkpoints import seal

    root = tmp_path / "checkpoints"
    for step in (2, 4):
        folder = root / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(bytes(range(256)) * 4)
        seal(folder, step, 1.0, {"task": "T"})
    damaged = root / "checkpoint-4" / "model.safetensors"
    with open(damaged, "r+b") as f:
        f.seek(100)
        f.write(b"\xff" * 8)
    assert read_seal(root / "checkpoint-4") is not None  # sizes alone would have taken it
    with caplog.at_level("WARNING", logger="nlpexp"):
        assert newest_complete(root) == root / "checkpoint-2"
    assert f"{damaged} differs from its seal (sha256)" in caplog.text
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint-2", "damaged-checkpoint-4"]
    with pytest.raises(NlpexpError, match=r"trainer.resume: .*damaged-checkpoint-4 is damaged: .*model.safetensors "
                                          r"differs from its seal"):
        check_identity(root / "damaged-checkpoint-4", {"task": "T"})
    (root / "checkpoint-2" / "model.safetensors").write_bytes(bytes(range(256))[::-1] * 4)
    assert newest_complete(root) is None


def test_a_file_added_to_a_sealed_checkpoint_or_a_seal_naming_outside_files_is_refused(tmp_path):
    from nlpexp.trainer.checkpoints import damage, seal

    folder = tmp_path / "checkpoint-2"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"w" * 64)
    seal(folder, 2, 1.0, {"task": "T"})
    assert damage(folder, read_seal(folder)) is None
    (folder / "rng_state.pth").write_bytes(b"planted")
    assert damage(folder, read_seal(folder)) == f"{folder / 'rng_state.pth'} is not in its seal (added after it was " \
                                                "sealed)"
    record = json.loads((folder / SEAL).read_text())
    record["files"]["../outside"] = {"size": 1, "sha256": "0" * 64}
    (folder / SEAL).write_text(json.dumps(record))
    assert read_seal(folder) is None


def test_a_byte_flip_in_the_last_checkpoint_resumes_from_the_one_before(reference, compose_run, tmp_path, caplog):
    run_dir = tmp_path / "run"
    _killed_run(compose_run(*ARGS, run_dir=run_dir), "evaluate_validation")  # checkpoints 2 and 4 sealed
    weights = run_dir / "checkpoints" / "checkpoint-4" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-64:] = bytes(b ^ 0x55 for b in data[-64:])  # inside the tensors, not the header: it would still load
    weights.write_bytes(bytes(data))
    with caplog.at_level("INFO", logger="nlpexp"):
        metrics = run(compose_run(*ARGS, "trainer.resume=true", run_dir=run_dir))
    assert f"{weights} differs from its seal (sha256)" in caplog.text
    assert f"resuming from {run_dir / 'checkpoints' / 'checkpoint-2'}" in caplog.text
    for key, value in _comparable(reference).items():
        assert metrics[key] == pytest.approx(value, abs=1e-6), key


@pytest.fixture(scope="module")
def trained(uninterrupted):
    """checkpoint-4 of the uninterrupted smoke run, shared by the identity cases (which resume nothing from it)."""
    return uninterrupted[0] / "checkpoints" / "checkpoint-4"


@pytest.mark.parametrize("change,key", [("model.random_init.hidden_size=64", "model.random_init.hidden_size"),
                                        ("model.pooling=cls", "model.pooling"),
                                        ("model.max_seq_length=32", "model.max_seq_length")])
def test_resume_refuses_a_checkpoint_of_another_model_config(change, key, trained, compose_run, tmp_path):
    """The identity is what shapes the weights, not the model's name: one line naming the setting, nothing run."""
    with pytest.raises(NlpexpError, match=rf"^trainer.resume: .*checkpoint-4 was trained with {key}=\S+, this run "
                                          rf"has {key}="):
        run(compose_run(*ARGS, change, "trainer.max_steps=6", f"trainer.resume={trained}"))
    assert not list((tmp_path / "run").rglob("checkpoint-*")) and not (tmp_path / "run" / "metrics.json").exists()


def test_resume_refuses_a_checkpoint_of_other_data_files(trained, compose_run, tmp_path, data_root):
    """Same data config, same name, other rows in its training file: refused by the file's sha256."""
    import gzip
    import shutil

    other = tmp_path / "data"
    shutil.copytree(data_root, other)
    train = other / "snli" / "test.jsonl.gz"  # the first training file of data=allnli
    train.write_bytes(gzip.compress(b"".join(reversed(gzip.decompress(train.read_bytes()).splitlines(True)))))
    with pytest.raises(NlpexpError, match=r"was trained with data.files.snli/test=[0-9a-f]{64}, this run has "
                                          r"data.files.snli/test=[0-9a-f]{64}"):
        run(compose_run(*ARGS, f"data.root={other}", f"trainer.resume={trained}"))
