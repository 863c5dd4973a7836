from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from nlpexp.distributed import is_multiprocess
from nlpexp.errors import NlpexpError

log = logging.getLogger(__name__)
PRECISIONS = ("32", "bf16", "fp16")


class TrainerSettings:
    def __init__(
        self,
        max_epochs: float = 1,
        max_steps: int = -1,
        batch_size: int = 16,
        eval_batch_size: int = 64,
        gradient_accumulation_steps: int = 1,
        precision: str = "32",
        eval_every_steps: int | None = None,
        logging_steps: int = 10,
        save_total_limit: int | None = 2,
        early_stopping_patience: int | None = None,
        resume: bool | str = False,
        dataloader_workers: int = 0,
        seed: int = 42,
        auto_find_batch_size: bool = False,
        tf32: bool | None = None,
        group_by_length: bool = False,
    ):
        for key, value in {"batch_size": batch_size, "eval_batch_size": eval_batch_size,
                           "gradient_accumulation_steps": gradient_accumulation_steps,
                           "logging_steps": logging_steps}.items():
            if not isinstance(value, int) or value < 1:
                raise NlpexpError(f"trainer.{key} must be a positive integer, got {value!r}")
        if str(precision) not in PRECISIONS:
            raise NlpexpError(f"trainer.precision must be one of {PRECISIONS}, got {precision!r}")
        if eval_every_steps is not None and eval_every_steps < 1:
            raise NlpexpError(f"trainer.eval_every_steps must be a positive integer or null, got {eval_every_steps}")
        if max_steps <= 0 and max_epochs <= 0:
            raise NlpexpError("trainer.max_epochs must be > 0 (or set trainer.max_steps)")
        self.max_epochs = max_epochs
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.precision = str(precision)
        self.eval_every_steps = eval_every_steps
        self.logging_steps = logging_steps
        self.save_total_limit = save_total_limit
        self.early_stopping_patience = early_stopping_patience
        self.resume = resume
        self.dataloader_workers = dataloader_workers
        self.seed = seed
        self.auto_find_batch_size = auto_find_batch_size
        self.tf32 = tf32
        self.group_by_length = group_by_length

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size * self.gradient_accumulation_steps

    def training_arguments(self, args_class, output_dir: Path, monitor: str, greater_is_better: bool,
                           optimizer: functools.partial, **task_args: Any):
        """`args_class` (TrainingArguments or a subclass) filled from these settings and the optimizer's lr;
        `task_args` add to them or override them."""
        log.info("batch: %d per device x %d accumulation steps = %d per optimizer step", self.batch_size,
                 self.gradient_accumulation_steps, self.effective_batch_size)
        interval = {"eval_strategy": "steps", "eval_steps": self.eval_every_steps, "save_strategy": "steps",
                    "save_steps": self.eval_every_steps} if self.eval_every_steps else \
                   {"eval_strategy": "epoch", "save_strategy": "epoch"}
        arguments = dict(
            output_dir=str(output_dir),
            num_train_epochs=self.max_epochs,
            max_steps=self.max_steps,
            per_device_train_batch_size=self.batch_size,
            per_device_eval_batch_size=self.eval_batch_size,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            learning_rate=optimizer.keywords.get("lr", 5e-5),
            weight_decay=optimizer.keywords.get("weight_decay", 0.0),
            logging_steps=self.logging_steps,
            save_total_limit=self.save_total_limit,
            load_best_model_at_end=True,
            metric_for_best_model=_hf_metric_name(monitor),
            greater_is_better=greater_is_better,
            seed=self.seed,
            data_seed=self.seed,
            dataloader_num_workers=self.dataloader_workers,
            auto_find_batch_size=self.auto_find_batch_size,
            report_to="none",
            disable_tqdm=False,
            logging_nan_inf_filter=False,  # NonFiniteLossGuard must see a NaN loss
            dataloader_pin_memory=_has_cuda(),
            **self._device_flags(),
            **self._batching(args_class),
            **interval,
        )
        return args_class(**{**arguments, **task_args})

    def _batching(self, args_class) -> dict[str, str]:
        if not self.group_by_length:
            return {}
        if args_class.__module__.startswith("sentence_transformers"):
            raise NlpexpError("trainer.group_by_length works with the transformers Trainer tasks (classification, "
                              "summarization); the sentence-transformers trainers batch by task.batch_sampler")
        return {"train_sampling_strategy": "group_by_length"}  # batches of similar lengths: less padding

    def _device_flags(self) -> dict[str, bool]:
        """Precision, plus the CPU for processes started together without a GPU: transformers joins them over gloo
        only when told that they are on the CPU; otherwise each would train alone on its own copy of the data."""
        flags = self._precision_flags()
        if is_multiprocess() and not _has_cuda():
            flags["use_cpu"] = True
        if self.tf32 is not None:
            if _has_cuda():
                flags["tf32"] = self.tf32
            elif self.tf32:
                log.warning("trainer.tf32 needs an Ampere or newer NVIDIA GPU; ignored")
        return flags

    def _precision_flags(self) -> dict[str, bool]:
        if self.precision == "32":
            return {}
        import torch

        if torch.cuda.is_available():
            if self.precision == "bf16" and not torch.cuda.is_bf16_supported():
                log.warning("trainer.precision=bf16: this GPU has no bf16; training in fp32 (try fp16)")
                return {}
            return {self.precision: True}
        # CPU autocast exists for bf16 only; fp16 on CPU would fail deep inside accelerate.
        if self.precision == "fp16":
            log.warning("trainer.precision=fp16 needs a GPU; training in fp32")
            return {}
        return {"bf16": True, "use_cpu": True}  # transformers takes bf16 without a GPU only when told so

    def resume_checkpoint(self, checkpoints_dir: Path) -> str | None:
        """The checkpoint to resume from: a given path, the newest one for `true`, none for `false`."""
        if self.resume in (False, None):
            return None
        if self.resume is not True:
            if not Path(self.resume).is_dir():
                raise NlpexpError(f"trainer.resume: no checkpoint folder {self.resume}")
            return str(self.resume)
        found = sorted(checkpoints_dir.glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[-1]))
        if not found:
            raise NlpexpError(
                f"trainer.resume=true but {checkpoints_dir} holds no checkpoint; rerun with the same "
                f"hydra.run.dir as the interrupted run, or drop trainer.resume"
            )
        return str(found[-1])


def check_optimizer(factory: functools.partial) -> None:
    """Catch what torch would reject deep inside the trainer, with the config key to fix."""
    lr = factory.keywords.get("lr")
    if not isinstance(lr, int | float) or isinstance(lr, bool) or lr <= 0:
        raise NlpexpError(f"optimizer.lr must be a positive number, got {lr!r}")
    decay = factory.keywords.get("weight_decay", 0.0)
    if not isinstance(decay, int | float) or decay < 0:
        raise NlpexpError(f"optimizer.weight_decay must be a number >= 0, got {decay!r}")


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _hf_metric_name(monitor: str) -> str:
    """`val/spearman_cosine` -> `spearman_cosine` (the trainers prefix `eval_` themselves)."""
    split, _, name = monitor.partition("/")
    if split != "val" or not name:
        raise NlpexpError(f"task.monitor must look like 'val/<metric>', got {monitor!r}")
    return name


class ConfiguredOptimization:
    """Mixin for the HF trainers: optimizer and LR schedule come from the config's partials.

    Overriding get_optimizer_cls_and_kwargs (not create_optimizer) keeps each trainer's own parameter
    groups, e.g. the SoftmaxLoss classifier that SentenceTransformerTrainer adds.
    """

    def __init__(self, *args, optimizer_factory: functools.partial, scheduler_factory: functools.partial, **kwargs):
        self.optimizer_factory = optimizer_factory
        self.scheduler_factory = scheduler_factory
        super().__init__(*args, **kwargs)

    def get_optimizer_cls_and_kwargs(self, args, model=None):
        _, kwargs = super().get_optimizer_cls_and_kwargs(args, model)
        groups = {k: v for k, v in kwargs.items() if k in ("params", "model", "optimizer_dict")}
        settings = {k: v for k, v in self.optimizer_factory.keywords.items() if k != "weight_decay"}
        if "betas" in settings:
            settings["betas"] = tuple(settings["betas"])
        return self.optimizer_factory.func, {**settings, **groups}

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            self.lr_scheduler = self.scheduler_factory(
                optimizer=optimizer or self.optimizer, num_training_steps=num_training_steps
            )
            self._created_lr_scheduler = True
        return self.lr_scheduler
