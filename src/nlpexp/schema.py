"""One schema for every setting of the composed config, checked by validate() before anything is built. A value
outside its rule, an unknown key (`+trainer.fp16=true`), a missing `???` or an unresolvable `${...}` ends as one
NlpexpError line that names the key and what it allows.

nlpexp's own classes (ModelSpec, DataSpec, TrainerSettings, GenerationSettings, the tasks, the loggers, the study
sweeper's config) declare their keys, types and ranges on their own parameters, read by nlpexp.derived as a user's
component is, a class when a config names it (a task module imports its training library only when it runs: a
sweep's gate checks each config before a trial); what is listed here is what no signature of nlpexp's says: library
classes (a torch optimizer, a sentence-transformers loss) and the rules between keys.
Nodes that build a class are described per `_target_` (ByTarget); a class nlpexp does not describe in full (another
torch optimizer, a loss's extra options) is an open group: its listed keys are checked, the rest go to the class.
"""

from __future__ import annotations

import functools
import json
from dataclasses import replace
from pathlib import Path

from omegaconf import DictConfig

from hydra_plugins.nlpexp_optuna_sweeper.config import StudySweeperConf
from nlpexp import NlpexpError, rules
from nlpexp.components import BUILTIN_TARGETS
from nlpexp.data.readers import check_data_files
from nlpexp.derived import Described, check_group, described, locate
from nlpexp.paths import check_paths
from nlpexp.rules import NAME, SEED, Anything, Bool, ByTarget, Group, Int, ListOf, MapOf, Maybe, Num, OneOf, Text
from nlpexp.trainer import TrainerSettings

MODES = ("train", "eval", "test")  # test: an alias of eval (evaluate a given model or checkpoint)
STUDY_NAME = Text(r"[A-Za-z0-9][A-Za-z0-9._-]*", "a name of letters, digits, '.', '_' and '-'")


def _max_positions(model: dict) -> int | None:
    """The model's own position limit where it can be read without loading it: random_init or a config.json."""
    init = model.get("random_init") or {}
    if model.get("name_or_path") is None and init:
        return init.get("max_position_embeddings") or init.get("n_positions")
    source = str(model.get("name_or_path") or "")
    if source.startswith("bundled:"):
        from nlpexp.model.weights import BUNDLED, bundled_path

        source = bundled_path(source.removeprefix("bundled:")) if source[8:] in BUNDLED else ""
    config = Path(source).expanduser() / "config.json"
    if source and config.is_file():
        try:
            settings = json.loads(config.read_text())
        except (OSError, ValueError):
            return None  # the model loader reports an unreadable checkpoint with its own message
        return settings.get("max_position_embeddings") or settings.get("n_positions")
    return None


def _check_seq_length(model: dict, path: str) -> None:
    limit = _max_positions(model)
    length = model.get("max_seq_length")
    if limit and isinstance(length, int) and length > limit:
        raise NlpexpError(f"{path}.max_seq_length must be an integer in [1, {limit}] (the model's "
                          f"max_position_embeddings), got {length}")


MODEL = ByTarget(Described({"nlpexp.model.ModelSpec": (_check_seq_length,)}))
DATA = ByTarget(Described({"nlpexp.data.DataSpec": (check_data_files,)}))


def _check_duration(trainer: dict, path: str) -> None:
    epochs = trainer.get("max_epochs")
    if trainer.get("max_steps", -1) <= 0 and (epochs is None or epochs <= 0):
        raise NlpexpError(f"{path}.max_epochs must be > 0 when {path}.max_steps is not (one of them bounds training), "
                          f"got {'null' if epochs is None else epochs}")


TRAINER = described(TrainerSettings, checks=(_check_duration,))

_ADAM = Group({
    "lr": Num(0, lo_open=True), "head_lr": Maybe(Num(0, lo_open=True)), "weight_decay": Num(0),
    "betas": ListOf(Num(0, 1, hi_open=True), 2),
    "eps": Num(0, lo_open=True), "fused": Maybe(Bool()), "foreach": Maybe(Bool()), "amsgrad": Bool(),
    "maximize": Bool(), "capturable": Bool(), "differentiable": Bool(),
}, required=("lr",))
OPTIMIZER = ByTarget({"torch.optim.Adam": _ADAM, "torch.optim.AdamW": _ADAM},
                     other=Group({"lr": Num(0, lo_open=True), "head_lr": Maybe(Num(0, lo_open=True)),
                                  "weight_decay": Num(0)}, required=("lr",), open=True),
                     bound=("params",))  # the trainer passes the model's parameters

_SCHEDULER_KIND = ByTarget({}, bound=("optimizer", "num_training_steps"))  # the trainer completes the partial
SCHEDULER = replace(_SCHEDULER_KIND, groups=Described({"nlpexp.scheduler.build_scheduler": ()}, kind=_SCHEDULER_KIND))


class DescribedGroup(Group):
    """described(target) for a node that is one class's alone (`generation`), read when first used: a config that
    does not name the class never imports it (the sbert_nli run never imports nlpexp.generation)."""

    def __init__(self, target: str):
        object.__setattr__(self, "target", target)

    @functools.cached_property
    def described(self) -> Group:
        return described(locate(self.target))

    fields = property(lambda self: self.described.fields)
    required = property(lambda self: self.described.required)
    open = property(lambda self: self.described.open)
    checks = property(lambda self: self.described.checks)


GENERATION = DescribedGroup("nlpexp.generation.GenerationSettings")

_LOSSES = "sentence_transformers.sentence_transformer.losses."
_SCALE = {"scale": Num(0, lo_open=True), "gather_across_devices": Bool()}
LOSS = ByTarget({
    _LOSSES + "MultipleNegativesRankingLoss": Group(_SCALE, open=True),
    _LOSSES + "CachedMultipleNegativesRankingLoss": Group({**_SCALE, "mini_batch_size": Int(1)}, open=True),
    _LOSSES + "CoSENTLoss": Group({"scale": Num(0, lo_open=True)}, open=True),
    _LOSSES + "SoftmaxLoss": Group({f"concatenation_sent_{k}": Bool()
                                    for k in ("rep", "difference", "multiplication")}, open=True),
    _LOSSES + "DenoisingAutoEncoderLoss": Group({"tie_encoder_decoder": Bool(),
                                                 "decoder_name_or_path": Maybe(NAME)}, open=True),
}, nullable=True, bound=("model",))  # the task passes its model (and what else its loss needs)

# What pipeline.build_task passes every task. A task's keys, types and ranges are its constructor's (nlpexp.task);
# a DataSpec or GenerationSettings parameter (task.sts, task.generation) is checked as the node it is.
_TASK_KIND = ByTarget({}, bound=("model", "data", "trainer", "optimizer", "scheduler", "loss", "run_dir", "mode",
                                 "callbacks"), nodes={"nlpexp.data.DataSpec": DATA,
                                                      "nlpexp.generation.GenerationSettings": GENERATION})
TASK = replace(_TASK_KIND, groups=Described({t: () for t in BUILTIN_TARGETS if t.startswith("nlpexp.task.")},
                                            kind=_TASK_KIND),
               other=Group({"monitor": rules.MONITOR}, required=("monitor",), open=True))  # what every task has

LOGGER = ByTarget(Described({f"nlpexp.logger.{name}Logger": () for name in ("TensorBoard", "Wandb", "Mlflow")}))

PATHS = Group({"root_dir": NAME, "data_dir": NAME, "output_dir": NAME, "runs_dir": NAME, "sweeps_dir": NAME,
               "ledger_file": NAME,
               "cache_dir": Maybe(NAME), "registry_dir": Maybe(NAME)},
              required=("output_dir", "ledger_file"), checks=(check_paths,))

_DIRECTION = OneOf(("minimize", "maximize"))
_STUDY = described(StudySweeperConf)  # the sweeper's own keys, narrowed:
_STUDY = replace(_STUDY, open=True, fields={**_STUDY.fields, **{  # the official sweeper's keys are theirs
    "direction": rules.Either((_DIRECTION, ListOf(_DIRECTION))), "n_trials": Int(1), "n_jobs": Int(1),
    "storage": Maybe(Text(r"[a-z][a-z0-9+._-]*://.*", "an SQLAlchemy URL such as sqlite:///<file> or "
                                                      "postgresql://user:pw@host/db")),
    "study_name": Maybe(STUDY_NAME), "max_failure_rate": Num(0, 1), "failure_budget": Num(0, 1),
    "heartbeat_interval": Int(1), "grace_period": Int(1), "max_retry": Maybe(Int(0)), "studies_dir": Maybe(NAME),
    "registry_dir": Maybe(NAME), "params": Maybe(MapOf()),
    "sampler": Group({"_target_": Text(r"optuna\.samplers\.\w+", "optuna.samplers.<Sampler>"),
                      "seed": Maybe(SEED)}, open=True),
    "pruner": Group({"_target_": Text(r"optuna\.pruners\.\w+", "optuna.pruners.<Pruner>")}, open=True),
}})
SWEEPER = ByTarget({"hydra_plugins.nlpexp_optuna_sweeper.sweeper.StudySweeper": _STUDY,
                    "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper": _STUDY})
HYDRA = Group({"sweeper": SWEEPER}, open=True)  # Hydra's own structured configs type the rest

# In this order, so that a bad value is named where it is set, before the keys that interpolate it.
ROOT = Group({
    "paths": PATHS, "mode": OneOf(MODES), "seed": SEED, "optimized_metric": NAME, "verbose": Bool(),
    "model": MODEL, "data": DATA, "generation": Maybe(GENERATION), "task": TASK,  # optimizer.head_lr reads task's
    "optimizer": OPTIMIZER, "scheduler": SCHEDULER, "trainer": TRAINER, "loss": LOSS,
    "logger": Maybe(MapOf(LOGGER)), "hydra": HYDRA,
    "debug": Anything(),
}, required=("mode", "seed", "optimized_metric", "task", "model", "data", "optimizer", "scheduler", "trainer",
             "paths"), open=True)  # top-level keys of one's own (a note, a value to interpolate) are fine


def validate(cfg: DictConfig) -> None:
    """Every setting of `cfg` (and of `cfg.hydra` where a sweep passes it) against ROOT: in pipeline.run (each run,
    each trial) and in the gate (a sweep's base config, once). The security gate (nlpexp.config) has run before."""
    check_group(cfg, ROOT, "")
