"""How long training lasts: `trainer.max_steps` or `trainer.max_epochs`, whichever the user set.

The config files follow one convention, checked for every preset by tests/test_settings_take_effect.py: a layer
that bounds training by one of the two keys sets the other to "unset" (max_steps: -1, max_epochs: null). The
command line (and a sweep's trial parameters) cannot follow it, so the user's own choice is applied here: naming
one of the keys unsets the other; naming both, each bounding training, is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig, open_dict

from nlpexp import NlpexpError

KEYS = ("max_epochs", "max_steps")


def keys_set(overrides: Sequence[str]) -> set[str]:
    """Which of trainer.max_epochs / trainer.max_steps the overrides assign (`+`/`++` too, not `~` deletions)."""
    named = set()
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+")
        if "=" in override and key.startswith("trainer.") and key[len("trainer."):] in KEYS:
            named.add(key[len("trainer."):])
    return named


def settle_duration(cfg: DictConfig, overrides: Sequence[str]) -> None:
    """Make the key the user set bound training (in place): the other one is unset. Both set: NlpexpError."""
    trainer = cfg.get("trainer")
    named = keys_set(overrides)
    if trainer is None or not named:
        return
    steps, epochs = trainer.get("max_steps"), trainer.get("max_epochs")
    if not all(v is None or isinstance(v, int | float) and not isinstance(v, bool) for v in (steps, epochs)):
        return  # a value that is no number: the schema's one line names it (nlpexp.validate)
    by_steps = (steps or -1) > 0
    by_epochs = epochs is not None
    if named == set(KEYS):
        if by_steps and by_epochs:
            raise NlpexpError(f"trainer.max_epochs={trainer.max_epochs} and trainer.max_steps={trainer.max_steps} "
                              f"both bound training: set one of them (trainer.max_steps=-1 trains by epochs)")
        return
    with open_dict(trainer):
        if named == {"max_epochs"}:
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
