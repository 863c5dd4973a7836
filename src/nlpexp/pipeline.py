"""run(cfg): check the config, build what it names, train and/or evaluate, record the run.

Every run leaves in its run dir: config.yaml (secrets redacted), provenance.json, metrics.json on
success; and one line in the ledger whatever the outcome (nlpexp.attempt). When several processes train together
(torchrun, accelerate launch), rank 0 alone writes all of that and runs the loggers.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from nlpexp import attempt, distributed, provenance
from nlpexp.config import instantiate, to_container
from nlpexp.data import spec as data_spec
from nlpexp.errors import NlpexpError
from nlpexp.io import write_json_atomic, write_text_atomic
from nlpexp.metrics import check_finite
from nlpexp.redaction import redact, redact_hydra_files, redact_logs
from nlpexp.safety import check_run
from nlpexp.sweep import check_trial_owned, run_in_progress, trial_callbacks
from nlpexp.trainer.checkpoints import kill_point
from nlpexp.trainer.duration import settle_job_duration
from nlpexp.trainer.memory import release_memory
from nlpexp.validate import validate

log = logging.getLogger(__name__)
EVAL_ROLES = ("validation", "test")


def run(cfg: DictConfig) -> dict[str, float]:
    """Train and/or evaluate as `cfg.mode` says; returns the flat metrics also written to metrics.json."""
    redact_logs()
    redact_hydra_files()  # what Hydra wrote before this job started
    settle_job_duration(cfg)  # trainer.max_epochs or max_steps: whichever the command line or the trial set
    if not distributed.is_main_process():
        _check(cfg)
        distributed.log_to_console_only()
        return _train_and_evaluate(cfg, *_build(cfg))  # trains alongside rank 0, which records the run
    record = attempt.start_record(cfg)
    with data_spec.recording_reads() as files_read, run_in_progress():  # files_read: what provenance hashes
        metrics = _record_run(cfg, record, files_read)
    attempt.finish(cfg, record, metrics)
    release_memory()
    return metrics


def _record_run(cfg: DictConfig, record, files_read: set[str]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    run_dir = None
    try:
        _check(cfg)
        task, loggers = _build(cfg)  # refuses what cannot go together before the run dir is touched
        run_dir = Path(cfg.paths.output_dir)
        attempt.prepare_run_dir(run_dir, resume=cfg.trainer.get("resume"))
        write_text_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(saved_config(cfg))))
        metrics = _train_and_evaluate(cfg, task, loggers)
        check_finite(metrics, data_files(cfg))  # a NaN metric fails the run, naming the data that likely caused it
        check_trial_owned()  # a sweep trial whose sweep gave it up must not look finished
        write_json_atomic(run_dir / "metrics.json", metrics)
        from nlpexp.console import report_metrics  # transformers is loaded by now

        report_metrics(run_dir, metrics, cfg.optimized_metric)
    except BaseException as err:
        attempt.finish(cfg, record, metrics, err)  # first: a worker interrupted with its sweep has seconds left
        if run_dir is not None and run_dir.is_dir():
            with contextlib.suppress(OSError):
                _write_provenance(cfg, run_dir, files_read, record["start"])
        release_memory(err)  # the next sweep trial in this process starts from the same footprint
        raise
    _write_provenance(cfg, run_dir, files_read, record["start"])
    return metrics


def _write_provenance(cfg: DictConfig, run_dir: Path, files_read: set[str], started: str) -> None:
    write_json_atomic(run_dir / "provenance.json", redact(provenance.collect(cfg.seed, files_read, started)))


def _check(cfg: DictConfig) -> None:
    """What can be refused before anything is built (build_task() then refuses what cannot go together)."""
    check_run(cfg)  # code and secrets first: nothing of the config is used before the gate
    validate(cfg)  # every setting against nlpexp.schema before anything is built


def _build(cfg: DictConfig) -> tuple:
    """The task, validated, and the loggers (rank 0 only): built, nothing loaded or written yet."""
    model = model_spec(cfg)  # first: a missing model fails before transformers is even imported
    from transformers import set_seed

    from nlpexp import console  # imports transformers: after the checks, which fail fast without it

    console.configure(cfg.get("verbose", False))
    set_seed(cfg.seed)
    # The other processes see the same logs: one set of loggers records the run.
    # Loggers get their settings redacted (W&B tags, group and name are sent as they are).
    nodes = (cfg.get("logger") or {}).values() if distributed.is_main_process() else []
    loggers = [instantiate(OmegaConf.create(redact(to_container(node)))) for node in nodes]
    return build_task(cfg, callbacks=[*loggers, *trial_callbacks(cfg)], model=model), loggers


def _train_and_evaluate(cfg: DictConfig, task, loggers: list) -> dict[str, float]:
    metrics: dict[str, float] = {}
    config = logged_config(cfg, task.trainer_settings)
    for logger in loggers:
        logger.start(config)
    try:
        started = time.perf_counter()
        task.setup()
        kill_point("setup")
        if cfg.mode == "train":
            task.train()
        for role in EVAL_ROLES:
            metrics.update(task.evaluate(role))
            kill_point(f"evaluate_{role}")
        metrics.update(task.train_metrics)
        metrics["time/total_s"] = round(time.perf_counter() - started, 2)
    finally:
        for logger in loggers:
            logger.finish(redact(_hparams(cfg, task.trainer_settings)), metrics)
    return metrics


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
    model.use_registry(cfg.paths.get("registry_dir"))
    model.check()
    return model


def build_task(cfg: DictConfig, callbacks=(), model=None):
    """The task the config names, given every component it names, validated (Task.validate); nothing loaded yet."""
    model = model or model_spec(cfg)
    optimizer, scheduler = instantiate(cfg.optimizer), instantiate(cfg.scheduler)
    task = instantiate(
        cfg.task,
        model=model,
        data=instantiate(cfg.data),
        trainer=instantiate(cfg.trainer),
        optimizer=optimizer,
        scheduler=scheduler,
        loss=instantiate(cfg.loss) if cfg.get("loss") else None,
        run_dir=Path(cfg.paths.output_dir),
        mode=cfg.mode,
        callbacks=list(callbacks),
    )
    task.validate()
    return task


def objective(cfg: DictConfig, metrics: dict[str, float]) -> float:
    """The value sweeps optimise: metrics[cfg.optimized_metric]."""
    name = cfg.optimized_metric
    if name not in metrics:
        raise NlpexpError(f"optimized_metric '{name}' is not among this run's metrics: {', '.join(sorted(metrics))}")
    return float(metrics[name])


def logged_config(cfg: DictConfig, settings) -> dict:
    """The resolved config the loggers record (secrets redacted), plus what the trainer settings derive from it."""
    config = redact(to_container(cfg))
    config["trainer"]["effective_batch_size"] = settings.effective_batch_size
    return config


def saved_config(cfg: DictConfig) -> dict:
    """config.yaml: the resolved config, redacted, except that what this run's dir decides stays an interpolation
    (`${hydra:...}`, `${paths.output_dir}`), so that `run.py --config-path <run dir> --config-name config
    hydra.run.dir=D2` re-runs it into D2."""
    return _keep_runtime(cfg, redact(to_container(cfg)))


def _keep_runtime(node, resolved):
    if isinstance(node, DictConfig | ListConfig) and isinstance(resolved, dict | list):
        for key in node.keys() if isinstance(node, DictConfig) else range(len(node)):
            raw = node._get_node(key)._value()
            if isinstance(raw, str) and ("${hydra:" in raw or "${paths.output_dir}" in raw):
                resolved[key] = raw
            else:
                _keep_runtime(node._get_node(key), resolved[key])
    return resolved


def _hparams(cfg: DictConfig, settings) -> dict:
    """The settings a run is compared by (TensorBoard hparams)."""
    flat = {"task": cfg.task._target_.rsplit(".", 1)[-1], "model": cfg.model.name, "data": cfg.data.name,
            "seed": cfg.seed, "mode": cfg.mode}
    for group in ("optimizer", "scheduler", "trainer", "generation"):
        for key, value in (to_container(cfg[group]) if cfg.get(group) else {}).items():
            if not key.startswith("_") and isinstance(value, int | float | str | bool):
                flat[f"{group}.{key}"] = value
    flat["trainer.effective_batch_size"] = settings.effective_batch_size
    return {**_overridden(cfg), **flat}


def _overridden(cfg: DictConfig) -> dict:
    """The Hydra job's overridden settings (a sweep trial's sampled params: task.dropout, model.pooling...), so that
    the study's TensorBoard HPARAMS view (nlpexp.tb.write_study_hparams) finds each of its columns in every run."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    keys = [key for o in HydraConfig.get().overrides.task if "=" in o
            and not (key := o.split("=", 1)[0].lstrip("+~")).startswith("paths.")]  # where, not how, it ran
    values = {key: OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False) for key in keys}
    return {key: value for key, value in values.items() if isinstance(value, int | float | str | bool)}
