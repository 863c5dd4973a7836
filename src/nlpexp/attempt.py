"""One run attempt: its ledger line and its run dir.

Every attempt gets one ledger line, whatever ends it: a success, a bad config found before anything was built
(an unresolvable `${...}`, a run dir that cannot be made), a crash, Ctrl-C, a pruned sweep trial. The record is
built from the config without resolving anything that could fail, so that it can describe a broken config too.

A run dir is never mixed: when an attempt starts in a dir that an earlier attempt used, the earlier one's
config.yaml, metrics.json and provenance.json are moved to `previous/<time>/` first (with its checkpoints,
TensorBoard events and W&B run id unless the attempt resumes it, `trainer.resume`), so that what the top of
the dir holds always belongs to the latest attempt.
"""

from __future__ import annotations

import logging
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from nlpexp import ledger, provenance
from nlpexp.errors import NlpexpError, first_line
from nlpexp.redaction import redact

log = logging.getLogger(__name__)
RECORD_FILES = ("config.yaml", "metrics.json", "provenance.json")
RESUMABLE = ("checkpoints", "tensorboard", "wandb_run_id")  # what trainer.resume continues
PREVIOUS = "previous"
# What a run started from Python (nlpexp.api.train) was called with: a Hydra run's overrides come from Hydra.
CALLED_WITH: ContextVar[dict | None] = ContextVar("CALLED_WITH", default=None)


def start_record(cfg: DictConfig) -> dict:
    """The ledger record of an attempt that is starting (status `running`)."""
    from hydra.core.hydra_config import HydraConfig

    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    sweep_dir = hydra.sweep.dir if hydra is not None and hydra.mode.name == "MULTIRUN" else None
    target = _get(cfg, "task._target_")
    run_dir = _get(cfg, "paths.output_dir")
    return {
        "run_id": uuid.uuid4().hex[:12],
        "start": now(),
        "status": "running",
        "task": target.rsplit(".", 1)[-1] if isinstance(target, str) else None,
        "model": _get(cfg, "model.name"),
        "data": _get(cfg, "data.name"),
        "mode": _get(cfg, "mode"),
        "seed": _get(cfg, "seed"),
        "optimized_metric": _get(cfg, "optimized_metric"),
        "overrides": list(hydra.overrides.task) if hydra is not None else None,
        "run_dir": str(Path(run_dir).resolve()) if isinstance(run_dir, str) else None,
        "sweep_dir": str(Path(sweep_dir).resolve()) if sweep_dir else None,
        "git": provenance.git_state(),
        **(CALLED_WITH.get() or {}),
    }


def finish(cfg: DictConfig, record: dict, metrics: dict | None = None, err: BaseException | None = None) -> None:
    """Write the attempt's ledger line. A ledger that cannot be written fails the run with one line, unless the
    run already failed: then that error stays the one reported and this one is logged."""
    record.update(end=now(), metrics=metrics or {}, status="ok" if err is None else status_of(err))
    if err is not None:
        record["error"] = first_line(err)
        _mark_recorded(err)
    path = _get(cfg, "paths.ledger_file")
    try:
        if not isinstance(path, str):
            raise NlpexpError("paths.ledger_file does not resolve to a path")
        ledger.append(Path(path), redact(record))
    except (OSError, NlpexpError) as write_error:
        message = f"paths.ledger_file: no ledger line written to {path}: {first_line(write_error)}"
        if err is not None:
            log.error("%s", message)
            return
        raise NlpexpError(message) from write_error


def record_failed_attempt(cfg: DictConfig, err: BaseException) -> None:
    """The ledger line of an attempt that failed before (or outside) `pipeline.run`; nothing if run() wrote it
    (for `err` or for the error it was raised from, e.g. a library error turned into an NlpexpError)."""
    cause: BaseException | None = err
    while cause is not None:
        if getattr(cause, "nlpexp_recorded", False):
            return
        cause = cause.__cause__ or cause.__context__
    finish(cfg, start_record(cfg), err=err)


def status_of(err: BaseException) -> str:
    if isinstance(err, KeyboardInterrupt):
        return "interrupted"
    optuna = sys.modules.get("optuna")  # imported by sweeps only; a run outside one cannot be pruned
    if optuna is not None and isinstance(err, optuna.TrialPruned):
        return "pruned"  # stopped on purpose by the sweep's pruner
    return "failed"


def prepare_run_dir(run_dir: Path, resume: bool | str | None) -> None:
    """Make the run dir; move an earlier attempt's results aside (see the module doc). `resume` is
    trainer.resume: `true` continues the earlier attempt only where it left a complete checkpoint; without one
    the run starts over, and what the earlier attempt logged goes aside with its results."""
    from nlpexp.trainer.checkpoints import newest_complete

    resume = resume not in (False, None) and (resume is not True or newest_complete(run_dir / "checkpoints"))
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        earlier = [run_dir / name for name in RECORD_FILES if (run_dir / name).exists()]
        if not earlier:
            return
        if not resume:
            earlier += [run_dir / name for name in RESUMABLE if (run_dir / name).exists()]
        aside = run_dir / PREVIOUS / datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")
        aside.mkdir(parents=True)
        for path in earlier:
            path.rename(aside / path.name)
    except OSError as err:
        raise NlpexpError(f"paths.output_dir: cannot use {run_dir}: {err.strerror or first_line(err)}") from err
    log.warning("run dir %s held an earlier attempt: moved its %s to %s", run_dir,
                ", ".join(p.name for p in earlier), aside)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _get(cfg: DictConfig, key: str):
    """cfg[key], or None when it is missing or does not resolve (the record of a broken config)."""
    try:
        value = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
    except Exception:  # noqa: BLE001 (a config broken in any way still gets its ledger line)
        return None
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def _mark_recorded(err: BaseException) -> None:
    try:
        err.nlpexp_recorded = True
    except AttributeError:
        pass
