"""nlpexp from Python (a notebook): your own model, tokenizer and datasets, nlpexp's run (docs/python_api.md).

    from nlpexp.api import train
    result = train(["task=summarization", "data=dialogsum", "trainer.max_steps=50"],
                   model=my_model, tokenizer=my_tokenizer, train_dataset=my_train, eval_dataset=my_val)
    result.metrics, result.run_dir

It is `python run.py <overrides>` (pipeline.run), the given objects saved into the run dir, where the config reads
them: <run_dir>/given_model and <run_dir>/given_data/given/<split>.jsonl.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

from nlpexp import NlpexpError
from nlpexp.config import compose
from nlpexp.io import write_jsonl_atomic
from nlpexp.observers import CALLED_WITH


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, float]
    config: DictConfig = field(repr=False)  # the whole config: result.config, or config.yaml in the run dir

    def __repr__(self) -> str:
        monitor = self.config.get("optimized_metric")
        shown = {k: v for k, v in self.metrics.items() if k == monitor or k.startswith("test/")}
        figures = ", ".join(f"{k}={v:.4g}" for k, v in list(shown.items())[:4])
        return f"RunResult(run_dir='{self.run_dir}', {len(self.metrics)} metrics{': ' if figures else ''}{figures})"


def train(overrides: Sequence[str] = (), *, model: Any = None, tokenizer: Any = None,
          train_dataset: Iterable[dict] | None = None, eval_dataset: Iterable[dict] | None = None,
          test_dataset: Iterable[dict] | None = None, run_dir: str | Path | None = None) -> RunResult:
    """Compose the config from `overrides` (as run.py would), put the given objects in, run it.

    Datasets are anything that yields dicts (a datasets.Dataset, a list of dicts) with the task's columns, or
    with data.columns.<task column>=<your column> among the overrides. `mode=eval` in the overrides evaluates
    the given model without training. Returns the run dir, its metrics and the config it ran.
    """
    from nlpexp import console
    from nlpexp.pipeline import run

    cfg = compose([f"paths.output_dir={run_dir or 'null'}", *overrides], with_hydra=True)
    given = {"train": train_dataset, "validation": eval_dataset, "test": test_dataset}
    given = {split: rows for split, rows in given.items() if rows is not None}
    with open_dict(cfg):
        cfg.paths.output_dir = cfg.paths.output_dir or cfg.hydra.run.dir  # where run.py would put it
        del cfg["hydra"]
        run_dir = Path(cfg.paths.output_dir)
        console.configure(bool(cfg.get("verbose")))  # before saving the given model: no shard-writing bar
        if model is not None:
            _use_model(cfg, model, tokenizer, run_dir / "given_model")
        for split, rows in given.items():
            write_jsonl_atomic(run_dir / "given_data" / "given" / f"{split}.jsonl", rows)
        if given:
            cfg.data.update(root=str(run_dir / "given_data"), sources={"given": {}}, split_ratios=None,
                            splits={split: [f"given/{split}"] for split in given})
    called_with = CALLED_WITH.set({"overrides": list(overrides), "given": _given(model, tokenizer, given)})
    try:
        with _run_log(run_dir / "run.log"):
            metrics = run(cfg)
    finally:
        CALLED_WITH.reset(called_with)
    return RunResult(run_dir, metrics, cfg)


def _use_model(cfg: DictConfig, model: Any, tokenizer: Any, folder: Path) -> None:
    if hasattr(model, "save_pretrained"):
        model.save_pretrained(folder)
    elif hasattr(model, "save"):  # a SentenceTransformer
        model.save(str(folder))
    else:
        raise NlpexpError(f"model: a transformers model or a SentenceTransformer, got {type(model).__name__}")
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    cfg.model.name = describe(model)  # what the ledger, the loggers and `nlpexp runs` call it
    cfg.model.name_or_path = str(folder)
    cfg.model.random_init = None
    cfg.model.tokenizer = None


def describe(model: Any) -> str:
    """`BertForSequenceClassification from prajjwal1/bert-tiny`: the object's class and where it was loaded from."""
    source = getattr(model, "name_or_path", None)
    if not source and hasattr(model, "model_card_data"):  # a SentenceTransformer
        source = getattr(model.model_card_data, "base_model", None)
    return f"{type(model).__name__} from {source}" if source else type(model).__name__


def _given(model: Any, tokenizer: Any, datasets: dict[str, Any]) -> dict[str, str]:
    """The ledger's account of the objects train() was given."""
    given = {"model": describe(model)} if model is not None else {}
    if tokenizer is not None:
        given["tokenizer"] = f"{type(tokenizer).__name__} from {getattr(tokenizer, 'name_or_path', '') or '?'}"
    for role, rows in datasets.items():
        size = f"{len(rows)} rows" if hasattr(rows, "__len__") else "rows"
        given[f"{role}_dataset"] = f"{type(rows).__name__}, {size}"
    return given


@contextmanager
def _run_log(path: Path):
    """run.log in the run dir, as Hydra's job logging gives run.py (a notebook has no Hydra logging): on the
    `nlpexp` logger and on those of its children that do not propagate to it (a Hydra run in the same process
    left nlpexp.steps and others writing to their own file only)."""
    from nlpexp.console import ConsoleFormatter

    path.parent.mkdir(parents=True, exist_ok=True)
    file = logging.FileHandler(path, encoding="utf-8")
    file.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    console = logging.StreamHandler(sys.stderr)  # a notebook's cell shows stderr
    console.setLevel(logging.WARNING)  # warnings (a run dir moved aside, a head replaced) and errors
    console.setFormatter(ConsoleFormatter())
    has_console = any(not isinstance(h, logging.FileHandler) and getattr(h, "stream", None) in (sys.stdout, sys.stderr)
                      for h in logging.getLogger().handlers)  # Hydra's, or a notebook's own
    handlers = [file] if has_console else [file, console]
    children = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict) if name.startswith("nlpexp.")]
    loggers = [logging.getLogger("nlpexp"), *(child for child in children if not child.propagate)]
    levels = {logger: logger.level for logger in loggers}
    for logger in levels:
        logger.setLevel(min(logger.getEffectiveLevel(), logging.INFO))
        for handler in handlers:
            logger.addHandler(handler)
    try:
        yield
    finally:
        for logger, level in levels.items():
            for handler in handlers:
                logger.removeHandler(handler)
            logger.setLevel(level)
        file.close()
