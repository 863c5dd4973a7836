"""What a run leaves behind, recorded by its observers (pipeline.run): start(cfg) once the run reaches what the
observer needs (the ledger before anything can fail, the run dir once the task is built, the loggers before setup);
finish(metrics, error) once whatever ends the run, in reverse order (error None: a success). An observer that
refuses a success (a sweep trial given up, a file that cannot be written) makes it a failure for the observers
after it; one that fails while a failure is recorded is logged. Every attempt gets one ledger line, built without
resolving what could fail (a broken config is described too); a run dir never mixes attempts (docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from omegaconf import DictConfig, OmegaConf

from nlpexp import NlpexpError, first_line
from nlpexp.config import to_container
from nlpexp.io import append_to_ledger, collect_provenance, write_json_atomic, write_text_atomic
from nlpexp.paths import git_state
from nlpexp.redaction import redact

log = logging.getLogger(__name__)
RECORD_FILES = ("config.yaml", "metrics.json", "provenance.json")
RESUMABLE = ("checkpoints", "tensorboard", "wandb_run_id")  # what trainer.resume continues
# What a run started from Python (nlpexp.api.train) was called with: a Hydra run's overrides come from Hydra.
CALLED_WITH: ContextVar[dict | None] = ContextVar("CALLED_WITH", default=None)


class RunObserver(Protocol):
    def start(self, cfg: DictConfig) -> None: ...

    def finish(self, metrics: dict[str, float], error: BaseException | None) -> None: ...


class Observers:
    """The observers of one run, in the order they started."""

    def __init__(self):
        self.started: list[RunObserver] = []

    def start(self, observer: RunObserver, cfg: DictConfig) -> None:
        observer.start(cfg)
        self.started.append(observer)

    def finish(self, metrics: dict[str, float], error: BaseException | None) -> None:
        failed = error
        for observer in reversed(self.started):
            try:
                observer.finish(metrics, failed)
            except Exception as err:  # noqa: BLE001 (see the module doc)
                if failed is None:
                    failed = err
                else:
                    log.error("%s", first_line(err))
        if failed is not error:
            raise failed


class LedgerObserver:
    """The attempt's ledger line. A ledger that cannot be written fails the run with one line, unless the run
    already failed: then that error stays the one reported."""

    def start(self, cfg: DictConfig) -> None:
        from hydra.core.hydra_config import HydraConfig

        hydra = HydraConfig.get() if HydraConfig.initialized() else None
        sweep_dir = hydra.sweep.dir if hydra is not None and hydra.mode.name == "MULTIRUN" else None
        target, run_dir = _get(cfg, "task._target_"), _get(cfg, "paths.output_dir")
        self.path = _get(cfg, "paths.ledger_file")
        self.record = {
            "run_id": uuid.uuid4().hex[:12], "start": now(), "status": "running",
            "task": target.rsplit(".", 1)[-1] if isinstance(target, str) else None, "model": _get(cfg, "model.name"),
            "data": _get(cfg, "data.name"), **{key: _get(cfg, key) for key in ("mode", "seed", "optimized_metric")},
            "overrides": list(hydra.overrides.task) if hydra is not None else None,
            "run_dir": str(Path(run_dir).resolve()) if isinstance(run_dir, str) else None,
            "sweep_dir": str(Path(sweep_dir).resolve()) if sweep_dir else None,
            "git": git_state(), **(CALLED_WITH.get() or {}),
        }

    def finish(self, metrics: dict[str, float], error: BaseException | None) -> None:
        self.record.update(end=now(), metrics=metrics, status="ok")
        if error is not None:
            pruned = type(error).__name__ == "TrialPruned"  # stopped on purpose by a sweep
            status = "interrupted" if isinstance(error, KeyboardInterrupt) else "pruned" if pruned else "failed"
            self.record.update(status=status, error=first_line(error))
        try:
            if not isinstance(self.path, str):
                raise NlpexpError("paths.ledger_file does not resolve to a path")
            append_to_ledger(Path(self.path), redact(self.record))
        except (OSError, NlpexpError) as write_error:
            raise NlpexpError(f"paths.ledger_file: no ledger line written to {self.path}: "
                              f"{first_line(write_error)}") from write_error


class RunDirObserver:
    """The run dir: made, an earlier attempt moved aside, config.yaml (start); metrics.json and the console's
    figures on success, provenance.json (the files this run read) whatever the outcome (finish)."""

    def __init__(self, started: str, files_read: set[str]):
        self.started, self.files_read = started, files_read  # files_read: nlpexp.data.recording_reads

    def start(self, cfg: DictConfig) -> None:
        self.cfg, self.dir = cfg, Path(cfg.paths.output_dir)
        prepare_run_dir(self.dir, resume=cfg.trainer.get("resume"))
        write_text_atomic(self.dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(saved_config(cfg))))

    def finish(self, metrics: dict[str, float], error: BaseException | None) -> None:
        if error is None:
            from nlpexp.console import report_metrics  # transformers is loaded by now

            write_json_atomic(self.dir / "metrics.json", metrics)
            report_metrics(self.dir, metrics, self.cfg.optimized_metric)
        # provenance.json whatever the outcome; after a failure, that failure stays the error reported
        with contextlib.suppress(OSError) if error is not None else contextlib.nullcontext():
            facts = collect_provenance(self.cfg.seed, self.files_read, self.started)
            write_json_atomic(self.dir / "provenance.json", redact(facts))


class TrialObserver(RunObserver):  # its start is the protocol's, which does nothing
    """A sweep trial whose sweep gave it up must not look finished (nlpexp.sweep); nothing outside a sweep."""

    def finish(self, metrics: dict[str, float], error: BaseException | None) -> None:
        from hydra_plugins.nlpexp_optuna_sweeper import check_trial_owned

        if error is None:
            check_trial_owned()


class LoggerObserver:
    """The run's loggers (nlpexp.logger.RunLogger): the resolved config at the start, hparams and metrics at the end
    (also after a failed run, with what there is); secrets redacted."""

    def __init__(self, loggers: list, settings):
        self.loggers, self.settings = loggers, settings

    def start(self, cfg: DictConfig) -> None:
        from nlpexp.logger.base import hparams_of

        self.hparams = redact({**_overridden(cfg), **hparams_of(config := redact(to_container(cfg))),
                               "trainer.effective_batch_size": self.settings.effective_batch_size})
        config["trainer"]["effective_batch_size"] = self.settings.effective_batch_size
        for logger in self.loggers:
            logger.start(config)

    def finish(self, metrics: dict[str, float], error: BaseException | None) -> None:
        for logger in self.loggers:
            logger.finish(self.hparams, metrics)


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
        aside = run_dir / "previous" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")
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


def saved_config(cfg: DictConfig) -> dict:
    """config.yaml: the resolved config, redacted, except that what this run's dir decides stays an interpolation
    (`${hydra:...}`, `${paths.output_dir}`), so that `run.py --config-path <run dir> --config-name config
    hydra.run.dir=D2` re-runs it into D2."""
    return _keep_runtime(OmegaConf.to_container(cfg, resolve=False), redact(to_container(cfg)))


def _keep_runtime(written, resolved):
    """`resolved`, with the values `written` as a run dir interpolation put back as written."""
    if isinstance(resolved, dict | list):
        for key, value in written.items() if isinstance(written, dict) else enumerate(written):
            if isinstance(value, str) and ("${hydra:" in value or "${paths.output_dir}" in value):
                resolved[key] = value
            elif isinstance(value, dict | list):
                _keep_runtime(value, resolved[key])
    return resolved


def _overridden(cfg: DictConfig) -> dict:
    """The Hydra job's overridden settings (a sweep trial's sampled params: task.dropout, model.pooling...), so that
    the study's TensorBoard HPARAMS view (nlpexp.tb.write_study_hparams) finds each of its columns in every run."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    keys = [key for o in HydraConfig.get().overrides.task if "=" in o
            and not (key := o.split("=", 1)[0].lstrip("+~")).startswith(("paths.", "logger."))]  # where, not how
    values = {key: OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False) for key in keys}
    return {key: value for key, value in values.items() if isinstance(value, int | float | str | bool)}
