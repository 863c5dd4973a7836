"""The `study` sweeper: Hydra's Optuna sweeper with a persistent, resumable, prunable study.

Whatever the official sweeper does it does the same way, through the official code (upstream.py): the
search-space grammar, `params` in config, every sampler, `custom_search_space`, one or several objectives,
`optimization_results.yaml` in hydra.sweep.dir, `n_jobs` trials per batch, `max_failure_rate` per batch.
What it adds, each under its own key (config.py):

- the study lives in an RDB storage (sqlite in its dir unless `storage` names one); rerunning the command
  loads it and runs trials until `n_trials` of them have finished, whatever ran before and whoever ran
  it: several sweep processes on one storage share the work (trials.py);
- a stable name (`<hparams_search>-<hash of its definition>` unless `study_name` is set) and, with
  `studies_dir`, a stable dir `<studies_dir>/<study>`; trial N runs in `<dir>/N` (with Hydra's default subdir);
- heartbeats: a trial whose sweep died (kill -9) is queued again with the same params; a `pruner`;
- a study-wide `failure_budget`; a summary (nlpexp.sweep.summary); promotion of the best model.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydra_plugins.nlpexp_optuna_sweeper import seeding, upstream
from hydra_plugins.nlpexp_optuna_sweeper.config import metric_names
from hydra_plugins.nlpexp_optuna_sweeper.trials import Plan, TrialLoop
from nlpexp.redaction import redact  # (the storage redacts what it stores: the definition is compared as stored)

log = logging.getLogger(__name__)


class StudySweeper(Sweeper):
    def __init__(self, *, sampler: DictConfig, direction: Any, storage: str | None, study_name: str | None,
                 n_trials: int, n_jobs: int, max_failure_rate: float, custom_search_space: str | None,
                 params: DictConfig | None, pruner: DictConfig, **study_keys: Any) -> None:
        self.upstream = upstream.make_impl(
            direction=direction, storage=storage, study_name=study_name, n_trials=n_trials, n_jobs=n_jobs,
            max_failure_rate=max_failure_rate, custom_search_space=custom_search_space, params=params)
        self.sampler_config = sampler
        self.pruner_config = pruner
        # metric_names, failure_budget, heartbeats, studies_dir, plots, promotion: see config.py
        self.keys = SimpleNamespace(**study_keys)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function)

    def sweep(self, arguments: list[str]) -> None:
        from nlpexp.errors import NlpexpError

        try:
            self._validate()
            self._sweep(arguments)
        except NlpexpError as err:
            log.error("error: %s", err)
            sys.exit(2)

    def _validate(self) -> None:
        """The config every trial starts from, checked once before any trial (`validate_config`)."""
        from nlpexp.validate import validate

        if self.keys.validate_config:
            config = self.config.copy()
            with read_write(config), open_dict(config):
                config.paths.output_dir = str(config.hydra.sweep.dir)  # the trials' dirs go under it
            validate(config)

    def _sweep(self, arguments: list[str]) -> None:
        plan = self._plan(arguments)
        study = self._open_study(plan)
        loop = TrialLoop(self, study, plan)
        storage = "" if str(self.sweep_dir) in self.storage_url else f", storage {self.storage_url}"  # not its default
        log.info("study %s: %d of %d trials finished; dir %s%s", study.study_name, loop.finished(), plan.n_trials,
                 self.sweep_dir, storage)
        try:
            from nlpexp.sweep.once import library_warnings_once

            with library_warnings_once("submitit"):  # SLURM accounting polls: each distinct warning once
                loop.run()
        except BaseException:
            self._finish(study, plan, raising=True)
            raise
        self._finish(study, plan)

    # --- what the sweep is ------------------------------------------------------------------------------

    def _plan(self, arguments: list[str]) -> Plan:
        from nlpexp.errors import NlpexpError
        from nlpexp.sweep.storage import check_storage_url

        sweep_args, space, fixed, fixed_overrides = upstream.search_space(self.upstream, arguments)
        directions = upstream.directions(self.upstream)
        if self.upstream.n_jobs < 1:
            raise NlpexpError(f"hydra.sweeper.n_jobs must be >= 1 (trials at once), got {self.upstream.n_jobs}")
        self._check_space(space)
        check_storage_url(self.upstream.storage)
        grid = None
        if self.sampler_config._target_.endswith("GridSampler"):
            grid = {name: upstream.grid_choices(dist) for name, dist in space.items()}
        n_trials = self.upstream.n_trials
        if grid is not None:
            n_trials = min(n_trials, math.prod(len(choices) for choices in grid.values()))
        metrics = metric_names(self.keys.metric_names, len(directions))
        return Plan(sweep_args=sweep_args, space=space, fixed=fixed, fixed_overrides=fixed_overrides,
                    directions=directions, metrics=metrics, n_trials=n_trials, grid=grid,
                    promote_objective=self._promote_objective(metrics))

    def _check_space(self, space: dict) -> None:
        """A search-space key the config lacks fails once, here, rather than in every trial."""
        from nlpexp.errors import NlpexpError

        absent = object()
        missing = [key for key in space if key[0] not in "+~" and not any(c in key for c in "@/")
                   and OmegaConf.select(self.config, key, default=absent) is absent]
        if missing:
            raise NlpexpError(f"search space key(s) not in the config: {', '.join(missing)} "
                              f"(a typo? to add a new key write +{missing[0]}=...)")

    def _promote_objective(self, metrics: list[str]) -> int | None:
        """The objective that picks the model to promote: the only one, or the one promote_objective names."""
        from nlpexp.errors import NlpexpError

        chosen = self.keys.promote_objective
        if not self.keys.promote_best:
            return None
        if chosen is None:
            if len(metrics) == 1:
                return 0
            raise NlpexpError(f"hydra.sweeper.promote_objective must say which of the {len(metrics)} objectives "
                              f"({', '.join(metrics)}) picks the model to promote (a name or an index), or set "
                              f"hydra.sweeper.promote_best=false")
        if isinstance(chosen, int) and 0 <= chosen < len(metrics):
            return chosen
        if chosen in metrics:
            return metrics.index(chosen)
        raise NlpexpError(f"hydra.sweeper.promote_objective={chosen} is not an objective: {', '.join(metrics)} "
                          f"or an index below {len(metrics)}")

    # --- the study --------------------------------------------------------------------------------------

    def _open_study(self, plan: Plan):
        """Create the study, or load it when this command ran before; its dir, storage and sampler."""
        import optuna

        from nlpexp.config import instantiate
        from nlpexp.sweep import study as studies
        from nlpexp.sweep.storage import open_storage, sqlite_url

        definition = self._definition(plan)
        study_name = self.upstream.study_name or self._default_name(definition)
        self.sweep_dir = self._pin_sweep_dir(study_name)
        self.storage_url = self.upstream.storage or sqlite_url(self.sweep_dir)
        self.storage = open_storage(self.storage_url, self.keys.heartbeat_interval, self.keys.grace_period,
                                    self.keys.max_retry)
        study = optuna.create_study(study_name=study_name, storage=self.storage, directions=plan.directions,
                                    sampler=optuna.samplers.RandomSampler(),  # (replaced below, before any draw)
                                    pruner=instantiate(self.pruner_config), load_if_exists=True)
        studies.check_definition(study, definition, self.storage_url)
        studies.set_program(study, sys.argv[0], plan.fixed_overrides)
        joined_at, rank = seeding.join_study(self.storage, self.storage.get_study_id_from_name(study_name))
        study.sampler = self._sampler(plan, joined_at, rank)
        studies.write_study_file(self.sweep_dir, study.study_name, self.storage_url)
        return study

    def _definition(self, plan: Plan) -> dict:
        """What makes a study (overrides, space, objectives, sampler, pruner; not n_trials), redacted as stored."""
        one = len(plan.directions) == 1
        return redact({"arguments": sorted(plan.sweep_args),
                       "direction": plan.directions[0] if one else plan.directions,
                       "metric": plan.metrics[0] if one else plan.metrics,
                       "sampler": OmegaConf.to_container(self.sampler_config, resolve=True),
                       "pruner": OmegaConf.to_container(self.pruner_config, resolve=True)})

    def _default_name(self, definition: dict) -> str:
        from nlpexp.sweep.study import default_study_name  # (security: the storage is part of a study's identity)

        hydra, studies_dir = self.config.hydra, self.keys.studies_dir
        own_dir = self._given_on_command_line("hydra.sweep.dir") or studies_dir is None
        return default_study_name(hydra.runtime.choices.get("hparams_search") or "sweep", definition,
                                  self.upstream.storage, hydra.sweep.dir if own_dir else None, studies_dir)

    def _pin_sweep_dir(self, study_name: str) -> Path:
        """The study's dir, written into the sweep config so that optimization_results.yaml and the jobs use it:
        hydra.sweep.dir as configured anywhere, or <studies_dir>/<study> unless it is given on the command line."""
        hydra_cfg, studies_dir = self.config.hydra, self.keys.studies_dir
        own_dir = self._given_on_command_line("hydra.sweep.dir") or studies_dir is None
        sweep_dir = Path(hydra_cfg.sweep.dir if own_dir else Path(studies_dir) / study_name).resolve()
        with read_write(hydra_cfg), open_dict(hydra_cfg):
            hydra_cfg.sweep.dir = str(sweep_dir)  # (hydra.sweeper must stay as composed: Hydra compares it per job)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        self._pin_submitit_folder(sweep_dir)
        return sweep_dir

    def _pin_submitit_folder(self, sweep_dir: Path) -> None:
        """submitit's job scripts and logs into <study dir>/.submitit: the launcher resolved its folder from the
        sweep dir of before the study was named (a new dated dir per invocation), unless it was given."""
        params = getattr(self.launcher, "params", None)
        if (isinstance(params, dict) and "submitit_folder" in params
                and not self._given_on_command_line("hydra.launcher.submitit_folder")):
            params["submitit_folder"] = str(sweep_dir / ".submitit" / "%j")

    def _given_on_command_line(self, key: str) -> bool:
        return any(o.lstrip("+~").split("=", 1)[0] == key for o in self.config.hydra.overrides.hydra)

    def _sampler(self, plan: Plan, joined_at: int, rank: int):
        """This process's sampler for the study, seeded once (see seeding.py)."""
        from hydra.utils import instantiate

        seed = seeding.seed_for(self.sampler_config._target_, self.sampler_config.get("seed"), joined_at, rank)
        kwargs = {"seed": seed} if "seed" in self.sampler_config else {}
        sampler = instantiate(self.sampler_config, **kwargs, _execution_whitelist_=upstream.SAMPLER_WHITELIST)
        if seed != self.sampler_config.get("seed"):
            log.info("sampler seed %s (joined the study at trial %d, rank %d)", seed, joined_at, rank)
        return sampler(plan.grid) if plan.grid is not None else sampler

    # --- the end ----------------------------------------------------------------------------------------

    def _finish(self, study, plan: Plan, raising: bool = False) -> None:
        """optimization_results.yaml, the summary, the best model into the registry; after an error, not hiding it."""
        from nlpexp.sweep.promote import promote_best
        from nlpexp.sweep.summary import write_optimization_results, write_summary

        try:
            write_optimization_results(study, self.sweep_dir)
            summary = write_summary(study, self.sweep_dir, plots=self.keys.plots)
            if plan.promote_objective is not None:
                registry_dir = Path(self.keys.registry_dir) if self.keys.registry_dir else None
                promote_best(study, registry_dir, objective=plan.promote_objective)
        except Exception:
            if not raising:
                raise
            log.exception("the sweep summary could not be written")
            return
        log.info("%s", summary)

