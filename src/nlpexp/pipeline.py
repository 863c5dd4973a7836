"""run(cfg): build everything the config names, train and/or evaluate, write metrics.json."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from nlpexp.config import instantiate, to_container
from nlpexp.errors import NlpexpError
from nlpexp.io import write_json_atomic, write_text_atomic
from nlpexp.metrics import format_table

log = logging.getLogger(__name__)
MODES = ("train", "eval")
EVAL_ROLES = ("validation", "test")


def run(cfg: DictConfig) -> dict[str, float]:
    """Train and/or evaluate as `cfg.mode` says; returns the flat metrics also written to metrics.json."""
    if cfg.mode not in MODES:
        raise NlpexpError(f"mode must be one of {MODES}, got {cfg.mode!r}")
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    from transformers import set_seed

    set_seed(cfg.seed)
    loggers = [instantiate(node) for node in (cfg.get("logger") or {}).values()]
    task = instantiate(
        cfg.task,
        model=instantiate(cfg.model),
        data=instantiate(cfg.data),
        trainer=instantiate(cfg.trainer),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler),
        loss=instantiate(cfg.loss) if cfg.get("loss") else None,
        run_dir=run_dir,
        mode=cfg.mode,
        callbacks=loggers,
    )
    metrics: dict[str, float] = {}
    for logger in loggers:
        logger.start(to_container(cfg))
    try:
        started = time.perf_counter()
        task.setup()
        if cfg.mode == "train":
            task.train()
        for role in EVAL_ROLES:
            metrics.update(task.evaluate(role))
        metrics["time/total_s"] = round(time.perf_counter() - started, 2)
        write_json_atomic(run_dir / "metrics.json", metrics)
    finally:
        for logger in loggers:
            logger.finish(_hparams(cfg), metrics)
    log.info("metrics of %s\n%s", run_dir, format_table(metrics))
    return metrics


def objective(cfg: DictConfig, metrics: dict[str, float]) -> float:
    """The value sweeps optimise: metrics[cfg.optimized_metric]."""
    name = cfg.optimized_metric
    if name not in metrics:
        raise NlpexpError(f"optimized_metric '{name}' is not among this run's metrics: {', '.join(sorted(metrics))}")
    return float(metrics[name])


def _hparams(cfg: DictConfig) -> dict:
    """The settings a run is compared by (TensorBoard hparams)."""
    flat = {"task": cfg.task._target_.rsplit(".", 1)[-1], "model": cfg.model.name, "data": cfg.data.name,
            "seed": cfg.seed, "mode": cfg.mode}
    for group in ("optimizer", "scheduler", "trainer", "generation"):
        for key, value in (to_container(cfg[group]) if cfg.get(group) else {}).items():
            if not key.startswith("_") and isinstance(value, int | float | str | bool):
                flat[f"{group}.{key}"] = value
    return flat
