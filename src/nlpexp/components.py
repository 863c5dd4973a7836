"""What a config may build (`_target_`), computed once per process: nlpexp's own components (BUILTIN_TARGETS), what
installed packages declare (entry points `nlpexp.components`: `my_loss = "my_lab.losses:ContrastiveLoss"` exactly,
`my_lab = "my_lab"` the pattern `my_lab.*` only when the declaring distribution ships that package itself: no
package hands out another's code) and what NLPEXP_TRUST_TARGETS names; nothing here reads a config, so a config
can never add to it (docs/security.md, docs/extending.md). Hydra checks a callable's own class again: for_building()
adds the defining name of each exact user entry a node builds, as BUILTIN_TARGETS lists both.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Any

GROUP = "nlpexp.components"
TRUST_ENV = "NLPEXP_TRUST_TARGETS"
_DOTTED = r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*"
_ENTRY = re.compile(rf"(?P<module>{_DOTTED})(\s*:\s*(?P<attr>{_DOTTED}))?")
_TRUSTED = re.compile(rf"{_DOTTED}(\.\*)?")

# nlpexp's own components: what a `_target_` (job config or Hydra config) may name besides what installed packages
# declare and the person trusts. Exact names, no package-wide wildcard: transformers.* alone holds
# get_class_from_dynamic_module (runs a model folder's code), and nlpexp.* holds file writers.
# tests/test_security.py checks every `_target_` in conf/ and experiments/ is here.
BUILTIN_TARGETS = (
    # job config: one home per group (conf/<group>/ builds from src/nlpexp/<group>/)
    "nlpexp.data.DataSpec",
    "nlpexp.generation.GenerationSettings",
    "nlpexp.logger.TensorBoardLogger",
    "nlpexp.logger.WandbLogger",
    "nlpexp.logger.MlflowLogger",
    "nlpexp.model.ModelSpec",
    "nlpexp.scheduler.build_scheduler",
    "nlpexp.task.augsbert.AugSbertTask",
    "nlpexp.task.classification.ClassificationTask",
    "nlpexp.task.embedding.EmbeddingTask",
    "nlpexp.task.sbert_nli.SbertNliTask",
    "nlpexp.task.summarization.SummarizationTask",
    "nlpexp.task.tsdae.TsdaeTask",
    "nlpexp.trainer.TrainerSettings",
    "sentence_transformers.sentence_transformer.losses.CachedMultipleNegativesRankingLoss",
    "sentence_transformers.sentence_transformer.losses.CoSENTLoss",
    "sentence_transformers.sentence_transformer.losses.CosineSimilarityLoss",
    "sentence_transformers.sentence_transformer.losses.DenoisingAutoEncoderLoss",
    "sentence_transformers.sentence_transformer.losses.MultipleNegativesRankingLoss",
    "sentence_transformers.sentence_transformer.losses.SoftmaxLoss",
    "torch.optim.Adam",
    "torch.optim.AdamW",
    # the same classes by their defining module: Hydra re-checks a `_partial_` target's own name when it is called
    "sentence_transformers.sentence_transformer.losses.cached_multiple_negatives_ranking."
    "CachedMultipleNegativesRankingLoss",
    "sentence_transformers.sentence_transformer.losses.cosent.CoSENTLoss",
    "sentence_transformers.sentence_transformer.losses.cosine_similarity.CosineSimilarityLoss",
    "sentence_transformers.sentence_transformer.losses.denoising_auto_encoder.DenoisingAutoEncoderLoss",
    "sentence_transformers.sentence_transformer.losses.multiple_negatives_ranking.MultipleNegativesRankingLoss",
    "sentence_transformers.sentence_transformer.losses.softmax.SoftmaxLoss",
    "torch.optim.adam.Adam",
    "torch.optim.adamw.AdamW",
    # Hydra config: launchers, sweepers, and the study's sampler and pruner
    "hydra._internal.core_plugins.basic_launcher.BasicLauncher",
    "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
    "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
    "hydra_plugins.nlpexp_optuna_sweeper.sweeper.StudySweeper",
    "hydra_plugins.hydra_optuna_sweeper._impl.create_nsgaii_sampler",
    "hydra_plugins.hydra_optuna_sweeper._impl.create_nsgaiii_sampler",
    "optuna.samplers.CmaEsSampler",
    "optuna.samplers.GPSampler",
    "optuna.samplers.GridSampler",
    "optuna.samplers.QMCSampler",
    "optuna.samplers.RandomSampler",
    "optuna.samplers.TPESampler",
    "optuna.pruners.HyperbandPruner",
    "optuna.pruners.MedianPruner",
    "optuna.pruners.NopPruner",
    "optuna.pruners.PercentilePruner",
    "optuna.pruners.SuccessiveHalvingPruner",
    "optuna.pruners.ThresholdPruner",
)


@functools.cache
def allowlist() -> tuple[str, ...]:
    """Built-in + declared + trusted: exact names and `pkg.*` patterns (Hydra's execution allow-list format)."""
    return tuple(dict.fromkeys((*BUILTIN_TARGETS, *_added()[0])))


def is_allowed(target: Any) -> bool:
    return isinstance(target, str) and any(_matches(target, entry) for entry in allowlist())


def refusal(path: str, target: Any) -> str:
    """The one line for a `_target_` nothing allows: how to allow it, and why a declaration that would have allowed
    it (or a malformed NLPEXP_TRUST_TARGETS entry) did not count."""
    why = [f"; {reason}" for pattern, reason in _added()[1]
           if pattern is None or (isinstance(target, str) and _matches(target, pattern))]
    return (f"{path or '<root>'}._target_={target!r} is not allowed: configs may only build nlpexp's components, "
            f"those an installed package declares (entry points `{GROUP}`) and those {TRUST_ENV} names (exact "
            f"names, no interpolation){''.join(why[:1])}")


def for_building(node: Any) -> tuple[str, ...]:
    """allowlist() plus the defining name of every exact user entry `node` builds (`my_lab:Loss` re-exported from
    my_lab.losses is checked by Hydra as my_lab.losses.Loss once built); imports only what Hydra then imports."""
    user = set(allowlist()) - set(BUILTIN_TARGETS)
    extra = [name for target in _targets(node) if target in user and (name := _defining_name(target)) != target]
    return tuple(dict.fromkeys((*allowlist(), *filter(None, extra))))


def _matches(target: str, entry: str) -> bool:
    return target.startswith(entry[:-1]) if entry.endswith(".*") else target == entry


def _targets(node: Any):
    from omegaconf import DictConfig, ListConfig

    if isinstance(node, DictConfig | dict):
        for key, value in node.items():
            if key == "_target_" and isinstance(value, str):
                yield value
            yield from _targets(value)
    elif isinstance(node, ListConfig | list | tuple):
        for value in node:
            yield from _targets(value)


def _defining_name(target: str) -> str | None:
    module, _, name = target.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None  # Hydra reports what cannot be imported, with its own message
    return f"{obj.__module__}.{obj.__qualname__}" if hasattr(obj, "__qualname__") else None


@functools.cache
def _added() -> tuple[tuple[str, ...], tuple[tuple[str | None, str], ...]]:
    """(entries the installed packages and the person add, (pattern or None, why an entry was not added))."""
    allowed: list[str] = []
    refused: list[tuple[str | None, str]] = []
    for entry in importlib.metadata.entry_points(group=GROUP):
        match = _ENTRY.fullmatch(entry.value.strip())
        owner = entry.dist.name if entry.dist else "an unknown distribution"
        if match is None:
            refused.append((None, f"{owner} declares {entry.name} = {entry.value!r}, not a module or module:name"))
        elif match["attr"]:
            allowed.append(f"{match['module']}.{match['attr']}")
        elif entry.dist is not None and _ships(entry.dist, match["module"]):
            allowed.append(f"{match['module']}.*")
        else:
            refused.append((f"{match['module']}.*", f"{owner} declares the pattern {match['module']}.* but does not "
                                                    f"ship the package {match['module']}"))
    for entry in (e.strip() for e in os.environ.get(TRUST_ENV, "").split(",")):
        if _TRUSTED.fullmatch(entry):
            allowed.append(entry)
        elif entry:
            refused.append((None, f"{TRUST_ENV} entry {entry!r} is neither a dotted name (a.b.C) nor a package "
                                  f"pattern (a.b.*)"))
    return tuple(allowed), tuple(refused)


def _ships(dist: importlib.metadata.Distribution, module: str) -> bool:
    """Does `dist` itself install `module` (a package or a .py file)? Its RECORD says; an editable install has
    the project's directory instead, where the module must then live."""
    parts = tuple(module.split("."))
    for file in dist.files or ():
        if file.parts[:len(parts)] == parts and len(file.parts) > len(parts) or \
                file.parts == (*parts[:-1], f"{parts[-1]}.py"):
            return True
    project = _editable_project(dist)
    spec = importlib.util.find_spec(parts[0]) if project else None
    origin = spec and (spec.origin or next(iter(spec.submodule_search_locations or []), None))
    return bool(origin) and Path(origin).resolve().is_relative_to(project)


def _editable_project(dist: importlib.metadata.Distribution) -> Path | None:
    try:
        url = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        return None
    if not url.get("dir_info", {}).get("editable") or not str(url.get("url", "")).startswith("file://"):
        return None
    return Path(url["url"].removeprefix("file://")).resolve()
