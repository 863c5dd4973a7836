"""The one place where nlpexp uses a library's private API (a name with a leading underscore), one section per
library (accelerate's state goes with the transformers Trainer that creates it). Each call is exercised by a test
(tests/test_adapters*.py, test_adapter_optuna.py, test_cache.py, test_help.py), so that an upstream change fails
there first. Nothing here imports a library before its function is called: every run imports this module.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage
    from optuna.trial import TrialState

# --- Hydra: its command-line parser, its start-up (search path, the main Hydra object) and the defaults list of a
# composition (which file a config came from); nlpexp.gate and nlpexp.file_keys call these.


def args_parser():
    """Hydra's own argparse parser of `python run.py ...` (-m, -cp, -cd, -cn, --cfg, overrides)."""
    from hydra._internal.utils import get_args_parser

    return get_args_parser()


def command_line_flags() -> set[str]:
    return {option for action in args_parser()._actions for option in action.option_strings}


def main_hydra(calling_file: str, config_path: str, config_dir: str | None):
    """The Hydra object `@hydra.main` would create (hydra._internal.utils._run_hydra): the same search path."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_automatic_config_search_path
    from hydra.core.config_search_path import SearchPathQuery

    search_path = create_automatic_config_search_path(calling_file, None, config_path)
    if config_dir is not None:
        search_path.prepend(provider="command-line", path=f"file://{os.path.abspath(config_dir)}",
                            anchor=SearchPathQuery(provider="schema"))
    return Hydra.create_main_hydra2(task_name="run", config_search_path=search_path)


def primary_config(hydra: Any, name: str) -> tuple[str, Any] | None:
    """(search path entry, config) of the primary config as Hydra reads it first, before its `hydra.searchpath`
    extends the search path (importing the packages its `pkg://` entries name)."""
    loaded = hydra.config_loader.repository.load_config(config_path=name)
    return None if loaded is None else (loaded.path, loaded.config)


def loaded_configs(hydra: Any, name: str, overrides: Sequence[str], multirun: bool) -> Iterator[tuple[str, str, Any]]:
    """(search path entry, config path, config) of every config the composition merges, in Hydra's order."""
    from hydra._internal.defaults_list import create_defaults_list

    loader = hydra.config_loader
    parsed, repo = loader._parse_overrides_and_create_caching_repo(name, list(overrides))
    defaults = create_defaults_list(repo=repo, config_name=name, overrides_list=parsed, prepend_hydra=True,
                                    skip_missing=multirun)
    for default in defaults.defaults:
        if default.config_path is not None:
            loaded = loader._load_single_config(default=default, repo=repo)
            yield loaded.path, default.config_path, loaded.config


def sources(hydra: Any, name: str, overrides: Sequence[str]) -> list[str]:
    """The search path entries (`file:///...`, `pkg://...`) a composition reads from."""
    _, repo = hydra.config_loader._parse_overrides_and_create_caching_repo(name, list(overrides))
    return [source.full_path() for source in repo.get_sources()]


def job_error(job) -> BaseException | None:
    """A failed Hydra job's exception, without raising it: JobReturn.return_value raises it after printing
    "Error executing job with overrides ..." on stderr, a second error line beside nlpexp's own."""
    from hydra.core.utils import JobStatus

    return None if job.status is JobStatus.COMPLETED else job._return_value


# --- OmegaConf's node API: a config's values as written (an interpolation stays the string `${...}`).


def dotted(key: str) -> str:
    """A key as OmegaConf reads it, brackets as dots: `hydra[job_logging].x` is `hydra.job_logging.x`."""
    from omegaconf._utils import split_key

    return ".".join(split_key(key))


def child(node: Any, key: Any) -> Any:
    """The node under `key` (a DictConfig key or a ListConfig index), not its resolved value."""
    return node._get_node(key)


def raw(node: Any) -> Any:
    """A node's value as written; a plain value as it is."""
    return node._value() if hasattr(node, "_value") else node


def is_none(node: Any) -> bool:
    return node._is_none()


def is_interpolation(node: Any) -> bool:
    return node._is_interpolation()


# --- Optuna beyond its documented API. A new Optuna is taken by bumping the pin in pyproject.toml with
# OPTUNA_VERSION, then making tests/test_adapter_optuna.py pass.
OPTUNA_VERSION = "5.0.0"


def has_heartbeat(storage: BaseStorage) -> bool:
    """Whether trials of this storage beat (an RDB storage opened with a heartbeat_interval; a journal: never); the
    `BaseHeartbeat` mixin lives in the private `optuna.storages._heartbeat`."""
    from optuna.storages._heartbeat import BaseHeartbeat

    return isinstance(storage, BaseHeartbeat) and storage.get_heartbeat_interval() is not None


def trial_of(study: optuna.Study, trial_id: int) -> optuna.Trial:
    """A trial of a study that another process asked for, as `Study.optimize` builds it."""
    import optuna

    return optuna.Trial(study, trial_id)


def trial_state(trial: optuna.Trial) -> TrialState:
    """The trial's state as stored now (another process may have ended it)."""
    return trial.study._storage.get_trial(trial._trial_id).state


def tell(study: optuna.Study, trial: optuna.Trial | int, **result: Any) -> None:
    """study.tell; the sweeper counts trials itself, so GridSampler's `study.stop()` after its last point (which
    raises outside `Study.optimize`, once the trial is stored) is ignored."""
    try:
        study.tell(trial, **result)
    except RuntimeError as err:
        if "Study.stop" not in str(err):
            raise


# --- transformers' Trainer, and the accelerate state it creates: everything else goes through callbacks and the
# Trainer's public methods.


def loss_sum(trainer) -> float:
    """Sum of the per-step training losses of this train() call so far: logged ones plus those since the last log
    (averaged over processes, as the trainer does when it logs)."""
    from transformers.trainer_pt_utils import nested_gather

    pending = nested_gather(trainer._tr_loss, trainer.args.parallel_mode).mean().item()
    return trainer._total_loss_scalar + pending


def scheduler_created(trainer) -> None:
    """Tell the trainer it built the schedule itself, so that a retry (auto_find_batch_size) builds it again."""
    trainer._created_lr_scheduler = True


def skip_epochs_when(trainer, ended) -> None:
    """No epoch runs while `ended()`: a run resumed from the checkpoint that ended its training takes no step
    (the library would take one more before checking). The guard holds the trainer weakly: a failed run's kept
    traceback holds the guard's frame and function, and must not keep the trainer and its model alive with them."""
    import inspect
    import weakref

    run_epoch = weakref.WeakMethod(trainer._run_epoch)
    has_ended = weakref.WeakMethod(ended) if inspect.ismethod(ended) else (lambda: ended)

    def guarded(*args, **kwargs):
        return None if has_ended()() else run_epoch()(*args, **kwargs)

    trainer._run_epoch = guarded


def reset_accelerator_state() -> None:
    """Forget the AcceleratorState of a finished run (the next run's TrainingArguments would reset it too); the
    process group (the partial state) is kept."""
    accelerate_state = sys.modules.get("accelerate.state")
    if accelerate_state is not None:
        accelerate_state.AcceleratorState._reset_state(reset_partial_state=False)


# --- datasets (pinned in pyproject; tests/test_cache.py fails when it changes).


def fingerprint(rows) -> str:
    """datasets' own fingerprint of a Dataset: a hash of its in-memory table, updated with every transform's
    arguments since (stable across processes with datasets 5.2). Where datasets cannot hash a transform it picks a
    random one: a cache keyed on it then misses, it is never wrong."""
    return rows._fingerprint
