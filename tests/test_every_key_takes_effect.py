"""Every setting takes effect or is refused (issue 28): the schema (nlpexp.schema.ROOT, each ByTarget group of it)
is walked, and each key it names, changed, changes what the run builds (the task after pipeline.build_task, with
its trainer settings, TrainingArguments, callbacks, data and model specs, optimizer, scheduler and loss calls; the
loggers; the GenerationConfig; the batch sampler; the objective) or ends as one error line. A key checked another
way is in OTHERWISE, with the test that checks it; a key added to the schema with neither fails here."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from nlpexp import NlpexpError
from nlpexp.config import compose, instantiate
from nlpexp.rules import Bool, ByTarget, Group, Int, MapOf, Maybe, Num, OneOf
from nlpexp.schema import ROOT

BASE = ("task=sbert_nli", "model=tiny_bert", "logger=none")
RUN_DIR = "/nonexistent/run"  # nothing is written: the objects are built, not run
# The config that selects a ByTarget group (its class's short name), on top of BASE.
CONTEXTS = {
    "Adam": ("optimizer=adam",), "ClassificationTask": ("task=classification", "data=imdb"),
    "SummarizationTask": ("task=summarization", "model=tiny_bart", "data=dialogsum"),
    "EmbeddingTask": ("task=embedding",), "AugSbertTask": ("task=augsbert",), "TsdaeTask": ("task=tsdae",),
    "MultipleNegativesRankingLoss": ("task=embedding",), "CoSENTLoss": ("task=embedding", "loss=cosent"),
    "CachedMultipleNegativesRankingLoss": ("task=embedding", "loss=cached_mnrl"),
    "DenoisingAutoEncoderLoss": ("task=tsdae",), "TensorBoardLogger": ("logger=tensorboard",),
    "WandbLogger": ("logger=wandb",), "MlflowLogger": ("logger=mlflow",),
}
# Keys read where a run does not build them for sbert_nli: the context they act in.
KEY_CONTEXTS = {"paths.cache_dir": CONTEXTS["ClassificationTask"], "generation": CONTEXTS["SummarizationTask"]}
# A value to change a key to where the rule alone cannot pick one that means something.
ALTERNATIVES = {
    "trainer.precision": "bf16", "trainer.max_tokens_per_batch": "8",
    "trainer.eval_every_steps": "5", "optimizer.betas": "[0.8,0.9]",
    "data.sources": "{snli: {hub_id: other/snli}}", "data.splits": "{train: [snli/validation]}",
    "data.columns": "{premise: sentence_a}", "data.label_names": "[a,b,c]", "data.split_ratios": "{train: 1.0}",
    "data.optional_roles": "[validation]", "data.train": "{files}/train.jsonl", "data.validation": "{files}/dev.csv",
    "data.test": "{files}/test.tsv", "model.random_init": "{model_type: bert, hidden_size: 16}",
    "model.name_or_path": "bundled:all-MiniLM-L6-v2", "model.build": "encoder_decoder",
    "optimized_metric": "val/accuracy", "paths.output_dir": "/nonexistent/other", "paths.data_dir": "{files}/data",
    "data.root": "{files}/data", "task.monitor": "val/pearson_cosine",
    "task.label_scores": "{entailment: 0.9, neutral: 0.5, contradiction: 0.0}", "task.text_columns": "[premise]",
    "task.reference_columns": "[summary]", "task.source_prefix": "'summarize: '",
    "task.prompt_separator": "' Summary: '", "task.head_lr": "0.5",
    "loss.decoder_name_or_path": "bundled:all-MiniLM-L6-v2", "logger.mlflow.tracking_uri": "sqlite:////nonexistent/o.db",
    "logger.wandb.tags": "[a]", "logger.wandb.entity": "someone", "logger.tensorboard.host": "0.0.0.0",
}
FULL_OVERRIDES = {"logger.mlflow.tags": "+logger.mlflow.tags.team=nlp",  # a key added to an empty mapping
                  "task.sts": "task.sts.max_eval_samples=3"}  # a DataSpec as `data`: one of its keys
# Keys checked another way (or not on this machine), each with where.
OTHERWISE = {
    "trainer.tf32": "a GPU only: on the CPU a console warning says it is ignored (tests/test_trainer_settings.py)",
    "trainer.resume": "resumes a checkpoint of the run dir: tests/test_resume.py",
    "paths.root_dir": "only the default of the other paths.* (conf/paths/default.yaml)",
    "paths.runs_dir": "hydra.run.dir and the ledger: tests/test_paths.py, test_settings_take_effect.py (ledger)",
    "paths.sweeps_dir": "hydra.sweep.dir and studies_dir: tests/test_paths.py",
    "paths.ledger_file": "LedgerObserver appends: tests/test_ledger.py, test_settings_take_effect.py (ledger)",
    "paths.registry_dir": "model.name_or_path=registry:<name> resolves there: tests/test_paths.py",
    "debug": "a config group (debug=smoke), not a value: tests/test_smoke_presets.py",
    "hydra.sweeper": "a study's settings, not a run's: tests/test_sweep*.py, tests/test_sweeper_*.py",
    "optimizer[other]": "another torch optimizer: the same lr/head_lr/weight_decay as AdamW's (cases above)",
    "task[other]": "a task class of one's own (tests/user_project): monitor, cache_dir as each task's above",
}
LOGGER_NAMES = {"TensorBoardLogger": "tensorboard", "WandbLogger": "wandb", "MlflowLogger": "mlflow"}


def schema_keys(node=ROOT, path: str = "", target: str | None = None, seen: set | None = None):
    """(key, rule, the class whose group lists it) for every key of the schema; a node reused at a second place
    (task.sts: a DataSpec like `data`) is one key there, its own keys being covered where first met."""
    seen = set() if seen is None else seen
    if isinstance(node, Maybe) and isinstance(node.rule, Group | ByTarget | MapOf):
        yield from schema_keys(node.rule, path, target, seen)
    elif isinstance(node, MapOf) and isinstance(node.value, ByTarget):  # logger: {<name>: <logger node>}
        for name, group in node.value.groups.items():
            short = name.rsplit(".", 1)[-1]
            yield from schema_keys(group, f"{path}.{LOGGER_NAMES[short]}", short, seen)
    elif isinstance(node, ByTarget):
        if id(node) in seen:
            yield path, node, target
            return
        seen.add(id(node))
        for name, group in node.groups.items():
            yield from schema_keys(group, path, name.rsplit(".", 1)[-1], seen)
        if node.other.fields:
            yield from schema_keys(node.other, path, "other", seen)
    elif isinstance(node, Group) and path != "hydra.sweeper":
        for name, rule in node.fields.items():
            yield from schema_keys(rule, f"{path}.{name}" if path else name, target, seen)
    else:
        yield path, node, target


def _cases():
    return [pytest.param(key, rule, target, id=key if target is None else f"{key}[{target}]")
            for key, rule, target in schema_keys()]


def _context(key: str, target: str | None) -> tuple[str, ...]:
    return KEY_CONTEXTS.get(key) or KEY_CONTEXTS.get(key.split(".")[0]) or CONTEXTS.get(target, ())


def _otherwise(key: str, target: str | None) -> str | None:
    return OTHERWISE.get(key) or OTHERWISE.get(f"{key.split('.')[0]}[{target}]") or \
        next((why for k, why in OTHERWISE.items() if key.startswith(k + ".")), None)


def _alternative(key: str, rule, current):
    if key in ALTERNATIVES:
        return ALTERNATIVES[key]
    if isinstance(rule, Maybe):
        return "null" if current is not None else _alternative(key, rule.rule, None)
    if isinstance(rule, Bool):
        return str(not current).lower()
    if isinstance(rule, OneOf):
        return next(c for c in rule.choices if str(c) != str(current))
    if isinstance(rule, Int):
        return str((current if current is not None else (rule.lo or 1)) + 1)
    if isinstance(rule, Num):
        value = (current or 0.1) * 0.5 if rule.hi is not None else (current or 0.1) * 2
        return repr(float(value))
    return f"{current}_changed"


def state(value, depth: int = 4):
    """A comparable picture of a built object: its attributes, partials as (function, keywords)."""
    if isinstance(value, functools.partial):
        return ("partial", value.func, state(value.keywords, depth))
    if isinstance(value, dict):
        return {str(k): state(v, depth) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [state(v, depth) for v in value]
    if isinstance(value, str | int | float | bool | type(None) | Path):
        return value
    if depth and hasattr(value, "__dict__"):
        return (type(value).__name__, state(vars(value), depth - 1))
    return repr(value)


def effect(overrides: list[str], with_setup: bool = False) -> dict:
    """What the run would do, from the objects it builds (nothing trained)."""
    from sentence_transformers import SentenceTransformerTrainingArguments

    from nlpexp.pipeline import build_task, objective
    from nlpexp.schema import validate

    cfg = compose([f"paths.output_dir={RUN_DIR}", *BASE, *overrides])
    validate(cfg)
    task = build_task(cfg)
    args = task.training_arguments(SentenceTransformerTrainingArguments).to_dict()
    args.pop("output_dir")  # the run dir is task.run_dir's
    if args["max_steps"] > 0:
        args.pop("num_train_epochs")  # the Trainer ignores it (transformers: max_steps > 0 overrides epochs)
    if args["eval_strategy"] == "epoch":
        args.pop("eval_steps"), args.pop("save_steps")
    built = {"task": state(task), "args": args, "callbacks": state(task.training_callbacks()),
             "loggers": [state(instantiate(node)) for node in (cfg.get("logger") or {}).values()],
             "objective": objective(cfg, {"val/accuracy": 0.25, cfg.task.monitor: 0.5}),
             "console": _console(cfg.verbose)}
    if getattr(task, "generation", None) is not None:
        from transformers import GenerationConfig

        built["generation_config"] = GenerationConfig(**task.generation.generate_kwargs()).to_dict()
    if with_setup:  # the model and data loaded: the batches of the first epoch, the start's scores
        task.setup()
        built["sampler"] = _batch_sampler(task)
        task.evaluate_start()
        built["start"] = sorted(task.start_metrics)
    return built


def _console(verbose: bool) -> int:
    """transformers' log level as console.configure(verbose) leaves it (then back to the default)."""
    from transformers.utils import logging as hf_logging

    from nlpexp import console

    console.configure(verbose)
    level = hf_logging.get_verbosity()
    console.configure(False)
    return level


def _batch_sampler(task) -> tuple:
    """The batches the sbert_nli trainer draws in its first epoch (a tiny random model, the test data)."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    from nlpexp.task.evaluators import lazy_evaluator

    args = task.training_arguments(SentenceTransformerTrainingArguments)
    trainer = task.make_trainer(SentenceTransformerTrainer, args, model=task.model, train_dataset=task.train_set,
                                loss=task.loss, evaluator=lazy_evaluator(True, lambda: None))  # never called
    sampler = trainer.get_batch_sampler(task.train_set, batch_size=4, drop_last=False,
                                        valid_label_columns=["label"], seed=0)
    return type(sampler).__name__, [list(map(int, b)) for b in sampler]


# Keys the task only reads: what they change must be seen in the part of the run named (not only in the trainer
# settings the task holds); "sampler" and "start" are seen with the model and data loaded.
SEEN_IN = {"trainer.group_by_length": "sampler", "trainer.max_tokens_per_batch": "sampler",
           "trainer.evaluate_start": "start", "trainer.early_stopping_patience": "callbacks"}
SETUP_KEYS = {key for key, part in SEEN_IN.items() if part in ("sampler", "start")}


@pytest.fixture(scope="module")
def baselines(data_root):
    """effect() of each context, computed once."""
    computed: dict = {}

    def baseline(context: tuple[str, ...], with_setup: bool):
        if (context, with_setup) not in computed:
            with pytest.MonkeyPatch.context() as env:
                env.setenv("NLPEXP_DATA_DIR", str(data_root))
                computed[context, with_setup] = effect(list(context), with_setup)
        return computed[context, with_setup]
    return baseline


@pytest.fixture(scope="module")
def composed():
    """The config of each context, composed once: read only (OmegaConf.select resolves at each read)."""
    return functools.cache(lambda context: compose([f"paths.output_dir={RUN_DIR}", *BASE, *context]))


@pytest.fixture(scope="module")
def files(tmp_path_factory, data_root) -> Path:
    folder = tmp_path_factory.mktemp("files")
    (folder / "data").symlink_to(data_root)  # the same data under another name
    rows = [{"premise": "a man plays", "hypothesis": "someone plays", "label": "entailment"}] * 4
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name, sep in (("dev.csv", ","), ("test.tsv", "\t")):
        (folder / name).write_text(sep.join(rows[0]) + "\n" + sep.join(rows[0].values()) + "\n")
    return folder


@pytest.mark.parametrize("key, rule, target", _cases())
def test_changing_a_setting_changes_the_run_or_is_refused(key, rule, target, baselines, composed, files):
    if (why := _otherwise(key, target)) is not None:
        pytest.skip(why)
    context = _context(key, target)
    absent = object()
    current = OmegaConf.select(composed(context), key, default=absent)
    value = str(_alternative(key, rule, None if current is absent else current)).replace("{files}", str(files))
    # a setting the config does not list, or a key of an empty mapping: +key
    override = FULL_OVERRIDES.get(key) or f"{'+' if current is absent else ''}{key}={value}"
    with_setup = key in SETUP_KEYS
    baseline = baselines(context, with_setup)
    try:
        changed = effect([*context, override], with_setup)
    except NlpexpError:
        return  # refused, with one line
    part = SEEN_IN.get(key)
    assert (changed[part] != baseline[part]) if part else (changed != baseline), \
        f"{override} changed nothing the run builds" + (f" ({part})" if part else "")


def test_every_key_has_a_case_or_a_reason():
    """The walk reaches every part of the schema: the groups a run builds, and the ones OTHERWISE names."""
    keys = {key for key, _, _ in schema_keys()}
    for prefix in ("task.sts", "task.generation.num_beams", "generation.num_beams", "loss.scale",
                   "logger.mlflow.log_model", "logger.wandb.mode", "logger.tensorboard.histograms", "mode", "seed",
                   "verbose", "optimized_metric", "trainer.early_stopping_patience"):
        assert prefix in keys, prefix
    unused = [k for k in OTHERWISE if "[" not in k and k not in keys]
    assert not unused, f"OTHERWISE names keys the schema does not have: {unused}"
