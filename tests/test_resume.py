"""Exact resume: a run SIGKILLed at any moment, rerun with trainer.resume=true, ends with the metrics of a run
that was never interrupted (to 1e-6, train/loss included); checkpoints are whole or absent.

The kills are real SIGKILLs (no finally block, no atexit), placed exactly by the NLPEXP_KILL_AT test hook in a
child process forked from this one (so it pays no second import of torch); the resumed runs and the one
uninterrupted reference run are in-process. 4 steps, checkpoints at 2 and 4 (debug=smoke).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal

import pytest

from nlpexp.errors import NlpexpError
from nlpexp.ledger import read as read_ledger
from nlpexp.pipeline import run
from nlpexp.tb import read_tags
from nlpexp.trainer.checkpoints import KILL_ENV, SEAL, newest_complete, read_seal

ARGS = ("task=sbert_nli", "model=tiny_bert", "debug=smoke", "logger=tensorboard", "logger.tensorboard.histograms=false")
TIMINGS = ("time/", "train/runtime_s", "train/samples_per_second", "train/eval_runtime_s")
# Where a kill lands (see nlpexp.trainer.checkpoints.kill_point), and the checkpoint resume then starts from.
KILLS = {
    "setup": None,                    # data and model loaded, no step taken
    "step:2": None,                   # mid-step, before the first checkpoint (step 1 logged)
    "step:3": "checkpoint-2",         # mid-step, after one
    "save:4": "checkpoint-2",         # checkpoint-4's files written, its seal not: it is not a checkpoint
    "evaluate_validation": "checkpoint-4",  # training done, final evaluation under way
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_root):
    """The uninterrupted run, shared by every case."""
    from nlpexp.config import compose

    out = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NLPEXP_DATA_DIR", str(data_root))
        return run(compose([f"paths.output_dir={out / 'run'}", f"paths.ledger_file={out / 'ledger.jsonl'}", *ARGS]))


def _killed_run(cfg, point: str) -> None:
    """Run `cfg` in a forked child that SIGKILLs itself at `point`."""

    def child():
        os.environ[KILL_ENV] = point
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
    with pytest.raises(NlpexpError, match=r"^trainer.resume: .*checkpoint-2 was trained with data=imdb, "
                                          r"task=ClassificationTask, this run has data=allnli, task=SbertNliTask"):
        run(compose_run(*ARGS, f"trainer.resume={checkpoint}"))
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert read_ledger(tmp_path / "ledger.jsonl")[-1]["status"] == "failed"


def test_resume_refuses_a_folder_that_is_no_checkpoint(compose_run, tmp_path):
    with pytest.raises(NlpexpError, match="is not a complete nlpexp checkpoint"):
        run(compose_run(*ARGS, f"trainer.resume={tmp_path}"))
