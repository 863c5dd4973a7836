"""Config of the study sweeper, `hydra/sweeper=study` in any Hydra app (nlpexp's presets add conf/hydra/sweeper/
nlpexp.yaml): the official sweeper's keys (same meaning, same defaults) plus those of a persistent study.
`pruner` is a group like `sampler`: `hydra/sweeper/pruner=median|...|none`.
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
class NopPrunerConfig(PrunerConfig):  # every trial runs to its end
    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class MedianPrunerConfig(PrunerConfig):  # stops a trial whose best is worse than the others' median at its step
    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 4
    n_warmup_steps: int = 0
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class HalvingPrunerConfig(PrunerConfig):
    reduction_factor: int = 3
    bootstrap_count: int = 0


@dataclass
class SuccessiveHalvingPrunerConfig(HalvingPrunerConfig):  # only the best 1/reduction_factor at a rung go on
    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    min_resource: Any = "auto"
    min_early_stopping_rate: int = 0


@dataclass
class HyperbandPrunerConfig(HalvingPrunerConfig):  # several successive-halving brackets
    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"


@dataclass
class StudySweeperConf(OptunaSweeperConf):
    _target_: str = "hydra_plugins.nlpexp_optuna_sweeper.sweeper.StudySweeper"
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "none"}])
    pruner: PrunerConfig = MISSING
    metric_names: Any = None  # the objectives' names, in `direction`'s order; null: value / value_<i>
    # The study stops once more than failure_budget * n_trials trials failed (1.0: never); max_failure_rate is
    # the official per-batch rule.
    failure_budget: float = 1.0
    fail_without_result: bool = False  # true: a sweep none of whose trials finished exits 2 (false: 0, as upstream)
    # A trial is alive while its sweep records a heartbeat every heartbeat_interval seconds; one silent for
    # grace_period seconds (a killed sweep) is failed and queued again with the same params, max_retry times.
    heartbeat_interval: int = 10
    grace_period: int = 30
    max_retry: int = 3
    # null: the study lives in hydra.sweep.dir (as upstream); set: in <studies_dir>/<study>, stable across reruns,
    # unless hydra.sweep.dir is given on the command line.
    studies_dir: str | None = None
    plots: bool = False  # summary plots (PNG; HTML with plotly): seconds, more than a trivial sweep
    # Register the best trial's best_model/ as registry:<study_name> (registry_dir null: the registry's own); with
    # several objectives promote_objective (a name or an index) picks the best trial on the Pareto front.
    promote_best: bool = False
    promote_objective: Any = None
    registry_dir: str | None = None


_STORE = ConfigStore.instance()
_STORE.store(group="hydra/sweeper", name="study", node=StudySweeperConf, provider="nlpexp")
for _name, _node in {"none": NopPrunerConfig, "median": MedianPrunerConfig,
                     "successive_halving": SuccessiveHalvingPrunerConfig, "hyperband": HyperbandPrunerConfig}.items():
    _STORE.store(group="hydra/sweeper/pruner", name=_name, node=_node, provider="nlpexp")
