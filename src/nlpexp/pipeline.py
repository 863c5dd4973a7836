"""run(cfg): check the config, build what it names, train and/or evaluate; what it leaves behind is recorded by its
observers (nlpexp.observers): the ledger line whatever the outcome, the run dir's config.yaml (secrets redacted),
provenance.json, metrics.json on success, the loggers. When several processes train together (torchrun,
accelerate launch), rank 0 alone records the run and runs the loggers. Whatever the outcome, what the run held is
freed before the next run of the process (release_memory: a sweep's trials share one).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import sys
import time
import traceback
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from hydra_plugins.nlpexp_optuna_sweeper import run_in_progress, trial_callbacks
from nlpexp import NlpexpError, is_main_process
from nlpexp import data as data_spec
from nlpexp.config import check_run, instantiate, to_container
from nlpexp.metrics import check_finite
from nlpexp.model import use_registry
from nlpexp.observers import LedgerObserver, LoggerObserver, Observers, RunDirObserver, TrialObserver
from nlpexp.redaction import redact, redact_hydra_files, redact_logs, take_config_secrets
from nlpexp.schema import validate
from nlpexp.trainer import settle_job_duration

log = logging.getLogger(__name__)


@run_in_progress()  # a sweep worker whose sweep is gone lets the run record its end (nlpexp.sweep)
def run(cfg: DictConfig) -> dict[str, float]:
    """Train and/or evaluate as `cfg.mode` says; returns the flat metrics also written to metrics.json."""
    main, recorders, metrics, ledger = is_main_process(), Observers(), {}, LedgerObserver()
    if main:  # before anything can fail: every attempt is recorded
        recorders.start(ledger, cfg)
    try:
        _attempt(cfg, main, recorders, ledger, metrics)
    except BaseException as err:
        recorders.finish(metrics, err)  # the ledger line last: the data files' hashes are cached by then
        release_memory(err)  # the next sweep trial in this process starts from the same footprint
        raise
    try:
        recorders.finish(metrics, None)  # may still fail the run: a recorder refusing it (see nlpexp.observers)
    finally:
        release_memory()
    return metrics


def _attempt(cfg: DictConfig, main: bool, recorders: Observers, ledger: LedgerObserver, metrics: dict) -> None:
    """Build, train and evaluate into `metrics`. Its own frame, so that a failed run's task (model, trainer) goes
    with the frames release_memory clears, not with run()'s, which a kept exception would hold."""
    with data_spec.recording_reads() as files_read:  # what provenance hashes: the files this run read
        take_config_secrets(cfg)  # a secret-named key's value, wherever a config copies it
        redact_logs()
        redact_hydra_files()  # what Hydra wrote before this job started
        settle_job_duration(cfg)  # trainer.max_epochs or max_steps: whichever the command line or the trial set
        check_run(cfg)  # code and secrets first: nothing of the config is used before the gate
        validate(cfg)  # every setting against nlpexp.schema before anything is built
        if not main:  # run.log is rank 0's; the other processes would interleave their lines with it
            root = logging.getLogger()
            for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
                root.removeHandler(handler)
                handler.close()
        task, loggers = _build(cfg, main)  # refuses what cannot go together before the run dir is touched
        # `auto` as the task settled it, so that the run dir's config.yaml and the trackers' parameters say what ran
        cfg.trainer.group_by_length = task.trainer_settings.group_by_length
        for observer in (RunDirObserver(ledger.record["start"], files_read), TrialObserver()) if main else ():
            recorders.start(observer, cfg)
        if loggers:
            recorders.start(LoggerObserver(loggers, task.trainer_settings), cfg)
        started = time.perf_counter()
        task.setup()
        if cfg.mode == "train":
            task.train()
        for role in ("validation", "test"):  # into `metrics`: what there is so far when it fails
            metrics.update(task.evaluate(role))
        metrics.update(task.train_metrics)
        metrics["time/total_s"] = round(time.perf_counter() - started, 2)
        if main:
            check_finite(metrics, data_files(cfg))  # a NaN metric fails the run, naming the data that caused it


def release_memory(error: BaseException | None = None) -> None:
    """Free what a finished run held before the next run in the same process (sweep trials share one, issue 20).
    A failed or pruned trial's traceback keeps every frame below the pipeline alive (the task, its model, optimizer
    state, data: +130 MB per failed trial of a 256-wide 2-layer BERT) while the sweeper keeps the exception: its
    finished frames are cleared (the traceback still prints), then Python, torch and the C heap give back the rest."""
    if error is not None and error.__traceback__ is not None:
        # The first frame is the caller's, still running; clear_frames skips it and clears the finished ones.
        traceback.clear_frames(error.__traceback__)
    gc.collect()
    if (torch := sys.modules.get("torch")) is not None:  # a run that stopped at its config never imported it
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()  # blocks the caching allocator kept for tensors that are gone
            torch.cuda.ipc_collect()
        from nlpexp.adapters import reset_accelerator_state

        reset_accelerator_state()
    if sys.platform.startswith("linux"):  # glibc keeps freed heap pages mapped, resident, until asked
        with contextlib.suppress(AttributeError):  # a libc without malloc_trim (musl)
            ctypes.CDLL(None).malloc_trim(0)  # the process's own symbols: the C library it runs on


def _build(cfg: DictConfig, main: bool) -> tuple:
    """The task, validated, and the loggers (rank 0's alone record the run): built, nothing loaded or written."""
    model = model_spec(cfg)  # first: a missing model fails before transformers is even imported
    from transformers import set_seed

    from nlpexp import console  # imports transformers: after the checks, which fail fast without it

    console.configure(cfg.get("verbose", False))
    set_seed(cfg.seed)
    # Loggers get their settings redacted (W&B tags, group and name are sent as they are).
    loggers = [instantiate(OmegaConf.create(redact(to_container(node))))
               for node in ((cfg.get("logger") or {}).values() if main else [])]
    return build_task(cfg, callbacks=[*loggers, *trial_callbacks(cfg)], model=model), loggers


def data_files(cfg: DictConfig) -> dict[str, list[str]]:
    """role -> the data files of every data node of the run (`data`, and a task's own such as `task.sts`)."""
    nodes = [cfg.get("data"), *(v for v in (cfg.task or {}).values() if isinstance(v, DictConfig))]
    files: dict[str, list[str]] = {}
    for node in (n for n in nodes if isinstance(n, DictConfig) and isinstance(n.get("splits"), DictConfig)):
        for role, names in to_container(node.splits).items():
            files.setdefault(role, []).extend(str(name) for name in names or [])
    return files


def model_spec(cfg: DictConfig):
    """The run's ModelSpec, its `registry:` reference looked up in the run's registry, its files checked."""
    model = instantiate(cfg.model)
    use_registry(model, cfg.paths.get("registry_dir"))
    model.check()
    return model


def build_task(cfg: DictConfig, callbacks=(), model=None):
    """The task the config names, given every component it names, validated (Task.validate); nothing loaded yet."""
    task = instantiate(cfg.task, model=model or model_spec(cfg), optimizer=instantiate(cfg.optimizer),
                       scheduler=instantiate(cfg.scheduler), data=instantiate(cfg.data),
                       trainer=instantiate(cfg.trainer), loss=instantiate(cfg.loss) if cfg.get("loss") else None,
                       run_dir=Path(cfg.paths.output_dir), mode=cfg.mode, callbacks=list(callbacks))
    task.validate()
    return task


def objective(cfg: DictConfig, metrics: dict[str, float]) -> float:
    """The value sweeps optimise: metrics[cfg.optimized_metric]."""
    name = cfg.optimized_metric
    if name not in metrics:
        raise NlpexpError(f"optimized_metric '{name}' is not among this run's metrics: {', '.join(sorted(metrics))}")
    return float(metrics[name])
