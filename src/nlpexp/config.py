"""Config plumbing shared by run.py, the tests and the tools: resolvers, composition, safe instantiation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nlpexp.errors import NlpexpError, first_line

PROJECT_ROOT = Path(os.environ.get("NLPEXP_ROOT", Path(__file__).resolve().parents[2]))
CONFIG_DIR = PROJECT_ROOT / "conf"
# The experiment presets: a plain folder beside conf/, Hydra's config group `experiment` through a search path
# entry (hydra_plugins/nlpexp_presets), not a symlink in conf/. docs/configuration.md: how conf/ is found.
PRESETS_DIR = PROJECT_ROOT / "experiments"


def require_config_dir() -> None:
    """conf/ and experiments/ are read from the checkout, not packaged: a non-editable install cannot find them."""
    if not (CONFIG_DIR / "config.yaml").is_file():
        raise NlpexpError(f"no nlpexp config at {CONFIG_DIR}: install the checkout editable "
                          "(pip install -e <checkout>) or set NLPEXP_ROOT=<checkout>")


def group_dir(group: str) -> Path:
    """The folder holding the options of a config group."""
    return PRESETS_DIR if group == "experiment" else CONFIG_DIR / group

# Experiment configs may come from other people: a `_target_` (job config or Hydra config) may only name one of
# these, exactly. No package-wide wildcard: transformers.* alone holds get_class_from_dynamic_module (runs a
# model folder's code), and nlpexp.* holds file writers. tests/test_security.py checks every `_target_` in conf/
# and experiments/ is here.
TARGET_ALLOWLIST = (
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


def _project_root() -> str:
    return str(PROJECT_ROOT)


def register_resolvers() -> None:
    from nlpexp.distributed import is_multiprocess
    from nlpexp.help import describe_group
    from nlpexp.paths import ledger_dir

    OmegaConf.register_resolver("nlpexp_root", _project_root, replace=True)
    OmegaConf.register_resolver("nlpexp_presets", describe_group, replace=True)  # run.py --help
    # true under torchrun / accelerate launch with more than one process (see nlpexp.distributed)
    OmegaConf.register_resolver("nlpexp_multiprocess", is_multiprocess, replace=True)
    OmegaConf.register_resolver("nlpexp_ledger_dir", ledger_dir, replace=True)  # conf/paths/default.yaml


register_resolvers()


def compose(overrides: list[str] | None = None, config_name: str = "config", with_hydra: bool = False) -> DictConfig:
    """Compose the run config in-process (tests, tools); `paths.output_dir` must be overridden. `with_hydra`: with
    Hydra's own node (the sweeper's settings), as a sweep sees it.

    Composition errors (unknown option, misspelled key, bad override syntax) become one-line NlpexpErrors.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from nlpexp.trainer.duration import settle_duration

    require_config_dir()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR)):
            cfg = hydra_compose(config_name=config_name, overrides=overrides or [], return_hydra_config=with_hydra)
    except (HydraException, OmegaConfBaseException) as err:
        raise NlpexpError(hydra_error_line(err)) from err
    settle_duration(cfg, overrides or [])  # trainer.max_epochs or max_steps: whichever the overrides set
    return cfg


def default_paths() -> dict[str, str]:
    """The `paths` group of the composed config, resolved (its NLPEXP_* variables included): the one source of every
    tool's default locations (runs_dir, sweeps_dir, ledger_file, registry_dir). Nothing runs; `output_dir`, a run's
    own, is left out. Inside a Hydra job or sweep (GlobalHydra is initialised there), with the job's overrides; a
    run resolves `registry:` against its own composed paths (pipeline.build_task)."""
    from hydra import compose as hydra_compose
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    overrides = ["paths.output_dir=null"]
    if GlobalHydra.instance().is_initialized():
        job = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
        cfg = hydra_compose(config_name="config", overrides=[*job, *overrides])
    else:
        cfg = compose(overrides)
    paths = OmegaConf.to_container(cfg.paths, resolve=True)
    paths.pop("output_dir")
    return paths


def hydra_error_line(err: Exception) -> str:
    """A composition error of Hydra (and the OmegaConf error it wraps) as one line: what to type instead where
    nlpexp.guidance knows it (the nearest option or key, -m for a sweep), else Hydra's own words."""
    from nlpexp import guidance

    cause = first_line(err.__cause__) if err.__cause__ and str(err.__cause__).strip() else ""
    message = f"{err}\n{cause}"
    for rewrite in (guidance.suggest_option, guidance.suggest_key, guidance.sweep_without_multirun):
        if line := rewrite(message):
            return line
    return one_line(message)


def one_line(message: str) -> str:
    """Hydra's multi-line composition messages as one line: lines joined by '; ', option lists by ', '."""
    parts: list[str] = []
    for line in (ln.strip() for ln in message.split("Config search path:")[0].splitlines()):
        line = line.rstrip(".")
        if not line or line.startswith("full_key:") or line.startswith("object_type="):
            continue
        if parts and parts[-1].endswith(":"):
            parts[-1] += " " + line
        elif parts and ":" in parts[-1] and " " not in line and parts[-1].rsplit(":", 1)[0].startswith("Available"):
            parts[-1] += ", " + line
        else:
            parts.append(line)
    return "; ".join(parts)


def instantiate(node: Any, **kwargs: Any) -> Any:
    """hydra.utils.instantiate restricted to TARGET_ALLOWLIST."""
    from hydra.errors import InstantiationException
    from hydra.utils import execution_whitelist
    from hydra.utils import instantiate as hydra_instantiate

    try:
        with execution_whitelist(TARGET_ALLOWLIST, reset=True):
            return hydra_instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, NlpexpError):
            raise cause from None
        raise NlpexpError(first_line(err)) from err


def to_container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
