"""run(cfg): check the config, build what it names, train and/or evaluate, record the run.

Every run leaves in its run dir: config.yaml (secrets redacted), provenance.json, metrics.json on
success; and one line in the ledger whatever the outcome. When several processes train together
(torchrun, accelerate launch), rank 0 alone writes all of that and runs the loggers.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from nlpexp import distributed, ledger, provenance
from nlpexp.config import instantiate, to_container
from nlpexp.data import spec as data_spec
from nlpexp.errors import NlpexpError
from nlpexp.io import write_json_atomic, write_text_atomic
from nlpexp.metrics import format_table
from nlpexp.safety import check_targets, redact
from nlpexp.scheduler import check_schedule
from nlpexp.sweep import trial_callbacks
from nlpexp.trainer.settings import check_optimizer

log = logging.getLogger(__name__)
MODES = ("train", "eval", "test")  # test: an alias of eval (evaluate a given model or checkpoint)
EVAL_ROLES = ("validation", "test")


def run(cfg: DictConfig) -> dict[str, float]:
    """Train and/or evaluate as `cfg.mode` says; returns the flat metrics also written to metrics.json."""
    check_targets(cfg)
    if cfg.mode not in MODES:
        raise NlpexpError(f"mode must be one of {MODES}, got {cfg.mode!r}")
    instantiate(cfg.model).check()  # before the task class is imported: that imports torch and friends
    task_class(cfg).check_config(cfg)
    run_dir = Path(cfg.paths.output_dir)
    if not distributed.is_main_process():
        distributed.log_to_console_only()
        return _train_and_evaluate(cfg)  # trains alongside rank 0, which records the run
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(redact(to_container(cfg)))))
    record = _start_record(cfg, run_dir)
    data_spec.FILES_READ.clear()
    metrics: dict[str, float] = {}
    try:
        metrics = _train_and_evaluate(cfg)
        write_json_atomic(run_dir / "metrics.json", metrics)
        log.info("metrics of %s\n%s", run_dir, format_table(metrics))
        record["status"] = "ok"
        return metrics
    except BaseException as err:
        record["status"] = _status_of(err)
        record["error"] = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise
    finally:
        write_json_atomic(run_dir / "provenance.json", provenance.collect(cfg.seed, data_spec.FILES_READ))
        record.update(end=_now(), metrics=metrics)
        ledger.append(Path(cfg.paths.ledger_file), redact(record))


def _status_of(err: BaseException) -> str:
    if isinstance(err, KeyboardInterrupt):
        return "interrupted"
    optuna = sys.modules.get("optuna")  # imported by sweeps only; a run outside one cannot be pruned
    if optuna is not None and isinstance(err, optuna.TrialPruned):
        return "pruned"  # stopped on purpose by the sweep's pruner
    return "failed"


def _train_and_evaluate(cfg: DictConfig) -> dict[str, float]:
    from transformers import set_seed

    set_seed(cfg.seed)
    # The other processes see the same logs: one set of loggers records the run.
    loggers = [instantiate(node) for node in (cfg.get("logger") or {}).values()] if distributed.is_main_process() \
        else []
    task = build_task(cfg, callbacks=[*loggers, *trial_callbacks(cfg)])
    metrics: dict[str, float] = {}
    config = logged_config(cfg, task.trainer_settings)
    for logger in loggers:
        logger.start(config)
    try:
        started = time.perf_counter()
        task.setup()
        if cfg.mode == "train":
            task.train()
        for role in EVAL_ROLES:
            metrics.update(task.evaluate(role))
        metrics.update(task.train_metrics)
        metrics["time/total_s"] = round(time.perf_counter() - started, 2)
    finally:
        for logger in loggers:
            logger.finish(_hparams(cfg, task.trainer_settings), metrics)
    return metrics


def task_class(cfg: DictConfig):
    from hydra.utils import get_class

    return get_class(cfg.task._target_)


def build_task(cfg: DictConfig, callbacks=()):
    """The task the config names, given every component it names (not set up yet)."""
    optimizer, scheduler = instantiate(cfg.optimizer), instantiate(cfg.scheduler)
    check_optimizer(optimizer)
    check_schedule(**scheduler.keywords)
    return instantiate(
        cfg.task,
        model=instantiate(cfg.model),
        data=instantiate(cfg.data),
        trainer=instantiate(cfg.trainer),
        optimizer=optimizer,
        scheduler=scheduler,
        loss=instantiate(cfg.loss) if cfg.get("loss") else None,
        run_dir=Path(cfg.paths.output_dir),
        mode=cfg.mode,
        callbacks=list(callbacks),
    )


def objective(cfg: DictConfig, metrics: dict[str, float]) -> float:
    """The value sweeps optimise: metrics[cfg.optimized_metric]."""
    name = cfg.optimized_metric
    if name not in metrics:
        raise NlpexpError(f"optimized_metric '{name}' is not among this run's metrics: {', '.join(sorted(metrics))}")
    return float(metrics[name])


def _start_record(cfg: DictConfig, run_dir: Path) -> dict:
    from hydra.core.hydra_config import HydraConfig

    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    sweep_dir = hydra.sweep.dir if hydra is not None and hydra.mode.name == "MULTIRUN" else None
    return {
        "run_id": uuid.uuid4().hex[:12],
        "start": _now(),
        "status": "running",
        "task": cfg.task._target_.rsplit(".", 1)[-1],
        "model": cfg.model.name,
        "data": cfg.data.name,
        "mode": cfg.mode,
        "seed": cfg.seed,
        "optimized_metric": cfg.optimized_metric,
        "overrides": list(hydra.overrides.task) if hydra is not None else None,
        "run_dir": str(run_dir.resolve()),
        "sweep_dir": str(Path(sweep_dir).resolve()) if sweep_dir else None,
        "git": provenance.git_state(),
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def logged_config(cfg: DictConfig, settings) -> dict:
    """The resolved config the loggers record (secrets redacted), plus what the trainer settings derive from it."""
    config = redact(to_container(cfg))
    config["trainer"]["effective_batch_size"] = settings.effective_batch_size
    return config


def _hparams(cfg: DictConfig, settings) -> dict:
    """The settings a run is compared by (TensorBoard hparams)."""
    flat = {"task": cfg.task._target_.rsplit(".", 1)[-1], "model": cfg.model.name, "data": cfg.data.name,
            "seed": cfg.seed, "mode": cfg.mode}
    for group in ("optimizer", "scheduler", "trainer", "generation"):
        for key, value in (to_container(cfg[group]) if cfg.get(group) else {}).items():
            if not key.startswith("_") and isinstance(value, int | float | str | bool):
                flat[f"{group}.{key}"] = value
    flat["trainer.effective_batch_size"] = settings.effective_batch_size
    return flat
