"""Checkpoints that are whole or absent, and the resume that trusts only those.

The HF trainers write `checkpoint-N/` in place, file by file: a kill while saving leaves a folder that looks
like a checkpoint and is not. `SealedCheckpoints` (mixed into every nlpexp trainer) writes a seal last,
`nlpexp_checkpoint.json`, after every file of the checkpoint is on disk (fsynced; files that on_save callbacks
add, such as the summarization predictions, included: the sealing callback runs last): the names and sizes of
those files, the step, the sum of the per-step training losses so far (so that `train/loss` of a resumed
run is the mean over all its steps, not over the resumed part only) and what the checkpoint was trained on
(task, model, data). A folder whose seal is missing, or whose files differ from it, is not a checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
from pathlib import Path

from nlpexp.boundary import hold_stop_signals, release_stop_signals
from nlpexp.errors import NlpexpError
from nlpexp.io import write_json_atomic
from nlpexp.redaction import redact

log = logging.getLogger(__name__)
SEAL = "nlpexp_checkpoint.json"
# Test hook: `NLPEXP_KILL_AT=<point>:<step>` SIGKILLs this process at that point (tests/test_resume.py).
KILL_ENV = "NLPEXP_KILL_AT"


def kill_point(point: str, step: int | None = None) -> None:
    """SIGKILL this process if NLPEXP_KILL_AT names this point (and step): a crash a test can place exactly."""
    wanted = os.environ.get(KILL_ENV)
    if wanted and wanted == (point if step is None else f"{point}:{step}"):
        os.kill(os.getpid(), signal.SIGKILL)


def seal(folder: Path, step: int, loss_sum: float, identity: dict | None) -> None:
    """Mark `folder` complete: fsync what it holds, then write the seal listing it (atomically, last)."""
    folder = Path(folder)
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != SEAL):
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        files[path.relative_to(folder).as_posix()] = path.stat().st_size
    _fsync_dir(folder)
    # the identity names the model and data as configured: secrets interpolated into them stay out of the run dir
    write_json_atomic(folder / SEAL, {"step": step, "loss_sum": loss_sum, "identity": redact(identity), "files": files})
    _fsync_dir(folder)


def read_seal(folder: Path) -> dict | None:
    """The seal of a complete checkpoint; None if `folder` is not one (no seal, or a file missing or cut)."""
    try:
        record = json.loads((Path(folder) / SEAL).read_text(encoding="utf-8"))
        for name, size in record["files"].items():
            if (Path(folder) / name).stat().st_size != size:
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return record


def newest_complete(checkpoints_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run; incomplete ones (killed while saving) are removed first,
    so that neither this lookup nor the trainer's own rotation ever takes them for checkpoints."""
    from transformers.trainer_utils import get_last_checkpoint

    checkpoints_dir = Path(checkpoints_dir)
    if not checkpoints_dir.is_dir():
        return None
    for folder in checkpoints_dir.glob("checkpoint-*"):
        if folder.is_dir() and read_seal(folder) is None:
            log.warning("%s is incomplete (the run stopped while saving it): removed", folder)
            shutil.rmtree(folder)
    last = get_last_checkpoint(str(checkpoints_dir))
    return Path(last) if last else None


def check_identity(folder: Path, identity: dict | None) -> dict:
    """The seal of `folder`; refuses a folder that is not a complete checkpoint, or one trained on other things."""
    record = read_seal(folder)
    if record is None:
        raise NlpexpError(f"trainer.resume: {folder} is not a complete nlpexp checkpoint (no {SEAL}, or its "
                          f"files differ from it); give a checkpoint-N folder of an nlpexp run, or use "
                          f"trainer.resume=true")
    theirs, identity = record.get("identity") or {}, redact(identity)  # seals hold the redacted identity
    differ = sorted(k for k in (identity or {}) if k in theirs and theirs[k] != identity[k])
    if differ:
        was = ", ".join(f"{k}={theirs[k]}" for k in differ)
        now = ", ".join(f"{k}={identity[k]}" for k in differ)
        raise NlpexpError(f"trainer.resume: {folder} was trained with {was}, this run has {now}; resume with "
                          f"the same task, model and data, or drop trainer.resume")
    return record


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SealedCheckpoints:
    """Mixin for the HF trainers: sealed checkpoints, and `train_loss` over every step of a resumed run."""

    _loss_before_resume = 0.0
    _resumed = False

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        from nlpexp.trainer.callbacks import SealAfterSave

        record = read_seal(resume_from_checkpoint) if isinstance(resume_from_checkpoint, str | Path) else None
        self._resumed = record is not None
        self._loss_before_resume = float(record["loss_sum"]) if record else 0.0
        if not any(isinstance(cb, SealAfterSave) for cb in self.callback_handler.callbacks):
            self.add_callback(SealAfterSave(self))  # last: after the callbacks that add files to a checkpoint
        try:
            return super().train(resume_from_checkpoint, *args, **kwargs)
        finally:
            release_stop_signals()  # a save that failed before its seal holds them no longer

    def _run_epoch(self, *args, **kwargs):
        # Resumed from the checkpoint that ended the training (its last step, or early stopping): the library
        # would take one more step before checking; an uninterrupted run took none.
        if self._resumed and self._training_had_ended():
            return None
        return super()._run_epoch(*args, **kwargs)

    def _training_had_ended(self) -> bool:
        from transformers import EarlyStoppingCallback

        stopped_early = any(isinstance(cb, EarlyStoppingCallback) and
                            cb.early_stopping_patience_counter >= cb.early_stopping_patience
                            for cb in self.callback_handler.callbacks)
        return self.state.global_step >= self.state.max_steps or stopped_early

    def training_step(self, *args, **kwargs):
        loss = super().training_step(*args, **kwargs)
        kill_point("step", self.state.global_step + 1)  # after the backward pass, before the optimizer step
        return loss

    _pending_seal: tuple[Path, int, float] | None = None

    def _save_checkpoint(self, model, trial) -> None:
        folder = Path(self._get_output_dir(trial)) / f"checkpoint-{self.state.global_step}"
        if self.args.should_save and folder.exists():
            shutil.rmtree(folder)  # a leftover of a killed save: never mix its files into this one
        self._pending_seal = (folder, self.state.global_step, self._loss_sum())
        hold_stop_signals()  # SIGINT/SIGTERM wait until this checkpoint is sealed: the stop leaves it whole
        super()._save_checkpoint(model, trial)
        kill_point("save", self.state.global_step)

    def seal_saved_checkpoint(self) -> None:
        """Seal the checkpoint just saved (called by SealAfterSave once every on_save callback has run)."""
        pending, self._pending_seal = self._pending_seal, None
        try:
            if pending is not None and self.args.should_save:
                folder, step, loss_sum = pending
                seal(folder, step, loss_sum, self._identity())
        finally:
            release_stop_signals()  # a stop signal that came while saving ends the run now

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if "train_loss" in logs and self._resumed:
            # The library averages over the steps of this train() call; a resumed run's mean covers them all.
            logs["train_loss"] = (self._loss_before_resume + self._total_loss_scalar) / max(self.state.global_step, 1)
        super().log(logs, *args, **kwargs)

    def _loss_sum(self) -> float:
        """Sum of the per-step losses so far: logged ones, plus those since the last log (averaged over processes
        as the trainer does when it logs)."""
        from transformers.trainer_pt_utils import nested_gather

        pending = nested_gather(self._tr_loss, self.args.parallel_mode).mean().item()
        return self._loss_before_resume + self._total_loss_scalar + pending

    def _identity(self) -> dict | None:
        from nlpexp.trainer.callbacks import CheckpointIdentity

        return next((cb.identity for cb in self.callback_handler.callbacks if isinstance(cb, CheckpointIdentity)),
                    None)
