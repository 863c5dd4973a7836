"""Config of the study sweeper: `hydra/sweeper=nlpexp_optuna`, set up for the `hparams_search` presets by
conf/hydra/sweeper/study.yaml (`hydra/sweeper=study`).

It is the Optuna sweeper's config plus the settings of a persistent study. `pruner` is a group like
`sampler`: `hydra/sweeper/pruner=median|successive_halving|hyperband|none`.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from omegaconf import MISSING


@dataclass
class PrunerConfig:
    _target_: str = MISSING


@dataclass
class NopPrunerConfig(PrunerConfig):
    """Every trial runs to its end."""

    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class MedianPrunerConfig(PrunerConfig):
    """Stop a trial whose best value so far is worse than the median of the others at the same step."""

    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 4
    n_warmup_steps: int = 0
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class SuccessiveHalvingPrunerConfig(PrunerConfig):
    """Asynchronous successive halving: only the best 1/reduction_factor of the trials at a rung go on."""

    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    min_resource: Any = "auto"
    reduction_factor: int = 3
    min_early_stopping_rate: int = 0
    bootstrap_count: int = 0


@dataclass
class HyperbandPrunerConfig(PrunerConfig):
    """Several successive-halving brackets with different aggressiveness."""

    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"
    reduction_factor: int = 3
    bootstrap_count: int = 0


@dataclass
class StudySweeperConf(OptunaSweeperConf):
    _target_: str = "hydra_plugins.nlpexp_optuna_sweeper.sweeper.StudySweeper"
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "none"}])

    pruner: PrunerConfig = MISSING
    # Trials launched at once (one batch); the launcher must run that many in parallel (hydra/launcher=parallel).
    n_jobs: int = 1
    # A study trial is alive while its sweep process records a heartbeat every heartbeat_interval seconds;
    # one silent for grace_period seconds (a killed sweep) is failed and queued again with the same params.
    heartbeat_interval: int = 10
    grace_period: int = 30
    max_retry: int = 3
    # A study's dir is <studies_dir>/<study_name> unless hydra.sweep.dir is given on the command line.
    studies_dir: str = "multirun"
    # At the end of a sweep the best trial's model is registered as registry:<study_name> (a new version
    # when it changed); registry_dir null: the registry's own (models/, or $NLPEXP_REGISTRY_DIR).
    promote_best: bool = True
    registry_dir: str | None = None


ConfigStore.instance().store(group="hydra/sweeper", name="nlpexp_optuna", node=StudySweeperConf, provider="nlpexp")
for _name, _node in {"none": NopPrunerConfig, "median": MedianPrunerConfig,
                     "successive_halving": SuccessiveHalvingPrunerConfig, "hyperband": HyperbandPrunerConfig}.items():
    ConfigStore.instance().store(group="hydra/sweeper/pruner", name=_name, node=_node, provider="nlpexp")
