"""The trainer group (`conf/trainer/<name>.yaml` builds a TrainerSettings): run settings mapped onto the HF
TrainingArguments family, and how long training lasts (settle_duration). nlpexp.trainer.build builds and trains
every trainer; it imports transformers, which this module does not at import, so that config errors come back in a
second."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from omegaconf import DictConfig, open_dict

from nlpexp import NlpexpError, is_multiprocess
from nlpexp.rules import Bool, Either, Int, Num, OneOf, Positive, Seed, Text
from nlpexp.trainer.checkpoints import check_identity, newest_complete

log = logging.getLogger(__name__)
DURATION_KEYS = ("trainer.max_epochs", "trainer.max_steps")


@dataclass(eq=False)  # identity, as before: settings are compared by what they build, never as values
class TrainerSettings:
    # Types and ranges, checked (nlpexp.schema) before this is built: the annotations.
    max_epochs: Annotated[float, Num(0)] | None = None  # one of max_epochs / max_steps bounds training
    max_steps: Annotated[int, Int(-1)] = 250
    batch_size: Positive = 16
    eval_batch_size: Positive = 64
    gradient_accumulation_steps: Positive = 1
    precision: Literal["32", "bf16", "fp16", "auto"] = "32"  # auto: bf16 or fp16 where the GPU has it, else 32
    eval_every_steps: Positive | None = None
    logging_steps: Positive = 10
    save_total_limit: Positive | None = 2
    # Checkpoints without optimizer, scheduler and RNG state: a third of the bytes to write, but not resumable (the
    # sweep presets: an interrupted trial is run again from its start, never resumed)
    save_only_model: bool = False
    early_stopping_patience: Positive | None = None
    resume: Annotated[bool | str, Either((Bool(), Text(meaning="a checkpoint folder")))] = False
    evaluate_start: bool = True  # score the starting model on validation first (start/<metric>)
    dataloader_workers: Annotated[int, Int(0, 256)] = 0
    seed: Seed = 42
    auto_find_batch_size: bool = False
    tf32: bool | None = None
    # auto: the task's own default (Task.groups_by_length, measured per task: docs/performance.md)
    group_by_length: Annotated[bool | str, Either((Bool(), OneOf(("auto",))))] = "auto"
    max_tokens_per_batch: Positive | None = None

    def __post_init__(self) -> None:
        self.precision = str(self.precision)  # YAML reads `precision: 16` as a number

    @property
    def batches_by_length(self) -> bool:
        """Length-grouped batches: asked for, or implied by a token budget (nlpexp.trainer.batching)."""
        return self.group_by_length is True or self.max_tokens_per_batch is not None

    def settle_grouping(self, task_default: bool) -> None:
        """`group_by_length: auto` becomes the task's measured default; true / false stay as given."""
        if self.group_by_length == "auto":
            self.group_by_length = task_default

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size * self.gradient_accumulation_steps

    def training_arguments(self, args_class, output_dir: Path, monitor: str, greater_is_better: bool,
                           optimizer: functools.partial, **task_args: Any):
        """`args_class` (TrainingArguments or a subclass) filled from these settings and the optimizer's lr;
        `task_args` add to them or override them."""
        import torch

        cuda = torch.cuda.is_available()
        # once on the console (then run.log only): AugSBERT builds two trainers
        announce = logging.getLogger("nlpexp.steps").info if getattr(self, "_announced", False) else log.info
        announce("batch: %d per device x %d accumulation steps = %d per optimizer step", self.batch_size,
                 self.gradient_accumulation_steps, self.effective_batch_size)
        self._announced = True
        interval = {"eval_strategy": "steps", "eval_steps": self.eval_every_steps, "save_strategy": "steps",
                    "save_steps": self.eval_every_steps} if self.eval_every_steps else \
                   {"eval_strategy": "epoch", "save_strategy": "epoch"}
        arguments = dict(
            output_dir=str(output_dir),
            num_train_epochs=1 if self.max_epochs is None else self.max_epochs,  # unused when max_steps > 0
            max_steps=self.max_steps,
            per_device_train_batch_size=self.batch_size,
            per_device_eval_batch_size=self.eval_batch_size,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            learning_rate=optimizer.keywords.get("lr", 5e-5),
            weight_decay=optimizer.keywords.get("weight_decay", 0.0),
            logging_steps=self.logging_steps,
            save_total_limit=self.save_total_limit,
            save_only_model=self.save_only_model,
            restore_callback_states_from_checkpoint=True,  # early stopping's patience count: exact resume
            load_best_model_at_end=True,
            metric_for_best_model=monitor.partition("/")[2],  # val/x -> x: the trainers prefix `eval_` themselves
            greater_is_better=greater_is_better,
            seed=self.seed,
            data_seed=self.seed,
            dataloader_num_workers=self.dataloader_workers,
            auto_find_batch_size=self.auto_find_batch_size,
            report_to="none",
            disable_tqdm=False,
            logging_nan_inf_filter=False,  # NonFiniteLossGuard must see a NaN loss
            dataloader_pin_memory=cuda,
            **self._device_flags(cuda),
            **self._batching(args_class),
            **interval,
        )
        return args_class(**{**arguments, **task_args})

    def _batching(self, args_class) -> dict[str, str]:
        if not self.batches_by_length or args_class.__module__.startswith("sentence_transformers"):
            return {}  # the sentence-transformers trainers take nlpexp.trainer.batching's sampler instead
        if self.max_tokens_per_batch is not None:
            raise NlpexpError("trainer.max_tokens_per_batch works with the sentence-transformers tasks (sbert_nli, "
                              "embedding, augsbert, tsdae); here use trainer.group_by_length=true")
        return {"train_sampling_strategy": "group_by_length"}  # batches of similar lengths: less padding

    def _device_flags(self, cuda: bool) -> dict[str, bool]:
        """Precision and TF32 as the device allows them, and `use_cpu` where transformers must be told: for bf16
        without a GPU, and for processes started together without one (transformers joins them over gloo only
        when told that they are on the CPU; otherwise each would train alone on its own copy of the data)."""
        import torch

        flags = {"use_cpu": True} if is_multiprocess() and not cuda else {}
        precision = auto_precision() if self.precision == "auto" else self.precision
        if self.precision == "auto":
            log.info("trainer.precision=auto: %s", precision)
        if precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
            log.warning("trainer.precision=bf16: this GPU has no bf16; training in fp32 (try fp16)")
        elif precision == "fp16" and not cuda:  # CPU autocast exists for bf16 only: fp16 would fail in accelerate
            log.warning("trainer.precision=fp16 needs a GPU; training in fp32")
        elif precision != "32":
            flags[precision] = True
            if not cuda:
                flags["use_cpu"] = True  # transformers takes bf16 without a GPU only when told so
        if self.tf32 is not None and cuda:
            flags["tf32"] = self.tf32
        elif self.tf32:
            log.warning("trainer.tf32 needs an Ampere or newer NVIDIA GPU; ignored")
        return flags

    def resume_checkpoint(self, checkpoints_dir: Path, identity: dict | None = None) -> str | None:
        """The checkpoint to resume from: a given path, the newest complete one for `true` (none: start over),
        none for `false`. Refuses a folder that is not a complete checkpoint of the same task, model and data."""
        if self.resume in (False, None):
            return None
        if self.resume is not True:
            if not Path(self.resume).is_dir():
                raise NlpexpError(f"trainer.resume: no checkpoint folder {self.resume}")
            check_identity(Path(self.resume), identity)
            return str(self.resume)
        found = newest_complete(checkpoints_dir)
        if found is None:
            log.warning("trainer.resume=true: no complete checkpoint in %s; starting over", checkpoints_dir)
            return None
        check_identity(found, identity)
        log.info("trainer.resume=true: resuming from %s", found)
        return str(found)


def auto_precision(gpu_bf16: Callable[[], bool | None] | None = None) -> str:
    """trainer.precision=auto: bf16 on a GPU that computes in it (Ampere or newer), fp16 on an older GPU, 32 on the
    CPU. `gpu_bf16()`: None without a GPU, else whether it has native bf16 (emulated bf16 is slower than fp16)."""
    if gpu_bf16 is None:
        import torch

        native_bf16 = torch.cuda.is_bf16_supported(including_emulation=False) if torch.cuda.is_available() else None
    else:
        native_bf16 = gpu_bf16()
    return "32" if native_bf16 is None else "bf16" if native_bf16 else "fp16"


def settle_duration(cfg: DictConfig, overrides: Sequence[str]) -> None:
    """Make trainer.max_steps or trainer.max_epochs, whichever the overrides set, bound training (in place).

    A config file that bounds training by one of them unsets the other (max_steps: -1, max_epochs: null; checked
    for every preset by tests/test_settings_take_effect.py). An override names one key only, so naming one (`+`/`++`
    too, not `~`) unsets the other here; naming both, each bounding training, is refused.
    """
    trainer = cfg.get("trainer")
    named = {key.lstrip("+") for key, assigned, _ in (o.partition("=") for o in overrides) if assigned}
    named &= set(DURATION_KEYS)
    if trainer is None or not named:
        return
    steps, epochs = trainer.get("max_steps"), trainer.get("max_epochs")
    if not all(v is None or isinstance(v, int | float) and not isinstance(v, bool) for v in (steps, epochs)):
        return  # a value that is no number: the schema's one line names it (nlpexp.schema)
    by_steps = (steps or -1) > 0
    if named == set(DURATION_KEYS):
        if by_steps and epochs is not None:
            raise NlpexpError(f"trainer.max_epochs={trainer.max_epochs} and trainer.max_steps={trainer.max_steps} "
                              f"both bound training: set one of them (trainer.max_steps=-1 trains by epochs)")
        return
    with open_dict(trainer):
        if named == {"trainer.max_epochs"}:
            trainer.max_steps = -1
        elif by_steps:
            trainer.max_epochs = None


def settle_job_duration(cfg: DictConfig) -> None:
    """settle_duration with the overrides of the Hydra job that runs `cfg` (the command line, a trial's parameters);
    nothing outside a Hydra job (nlpexp.config.compose settled it) or for another job's config."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    job = HydraConfig.get()
    if str(job.runtime.get("output_dir")) == str(cfg.get("paths", {}).get("output_dir")):
        settle_duration(cfg, list(job.overrides.task))
