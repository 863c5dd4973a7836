"""Every config node's keys are parameters of its `_target_` (torchtune's validate-every-config).

A key the target does not take fails at instantiation for one config only, or (with **kwargs deeper down) is
silently ignored; here every option of every group, every experiment preset and every sweep preset (Hydra's node
included) is composed, and each node with a `_target_` is bound to the target's signature.
"""

from __future__ import annotations

import inspect

import pytest
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig

from nlpexp.config import CONFIG_DIR, compose, group_dir

# Hydra's instantiation keys, not arguments of the target.
HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in group_dir(group).glob("*.yaml"))


def _compositions() -> list[tuple[str, ...]]:
    groups = sorted(p.name for p in CONFIG_DIR.iterdir() if p.is_dir() and p.name != "hydra")
    hydra_groups = sorted(p.name for p in (CONFIG_DIR / "hydra").iterdir() if p.is_dir() and p.name != "help")
    return [*((f"{g}={o}",) for g in [*groups, "experiment"] for o in _options(g)),
            *((f"hydra/{g}={o}",) for g in hydra_groups for o in _options(f"hydra/{g}"))]


def _target_nodes(node, path: str = ""):
    """(path, node) of every dict with a `_target_`, however deep (task nodes hold DataSpecs, sweepers samplers)."""
    if not isinstance(node, DictConfig | ListConfig) or node._is_none() or node._is_missing():
        return
    if isinstance(node, DictConfig):
        if "_target_" in node:
            yield path, node
        for key in node:
            yield from _target_nodes(node._get_node(key), f"{path}.{key}".lstrip("."))
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            yield from _target_nodes(node._get_node(i), f"{path}[{i}]")


def unbound_keys(node: DictConfig) -> list[str]:
    """The keys of `node` that its target's signature has no parameter for ([] when it takes **kwargs), less the
    keys nlpexp takes off the node itself before it calls the target (optimizer.head_lr: parameter groups)."""
    from nlpexp.trainer.build import OWN_KEYS

    parameters = inspect.signature(get_object(node._target_)).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return []
    consumed = set(OWN_KEYS) if str(node._target_).startswith("torch.optim.") else set()
    return [str(key) for key in node if key not in HYDRA_KEYS and key not in parameters and key not in consumed]


@pytest.mark.parametrize("overrides", _compositions(), ids=" ".join)
def test_every_key_is_a_parameter_of_its_target(overrides, tmp_path):
    cfg = compose([f"paths.output_dir={tmp_path}/run", *overrides], with_hydra=True)
    nodes = list(_target_nodes(cfg))
    assert nodes, "every composition builds something"
    unbound = {f"{path} ({node._target_})": unbound_keys(node) for path, node in nodes}
    assert not {where: keys for where, keys in unbound.items() if keys}


def test_a_stray_key_is_caught():
    """The check itself: a key the target lacks is reported; one it has, or any under **kwargs, is not."""
    from omegaconf import OmegaConf

    assert unbound_keys(OmegaConf.create({"_target_": "torch.optim.AdamW", "lr": 1e-3, "lrr": 1})) == ["lrr"]
    assert unbound_keys(OmegaConf.create({"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3})) == []
    assert unbound_keys(OmegaConf.create({"_target_": "nlpexp.config.instantiate", "anything": 1})) == []


def test_a_misspelled_key_in_a_composed_config_is_reported(tmp_path):
    cfg = compose([f"paths.output_dir={tmp_path}/run", "task=embedding", "+data.colums={}", "+task.sts.sed=1",
                   "+hydra.sweeper.sampler.sed=1", "hydra/sweeper=nlpexp"], with_hydra=True)
    found = {path: unbound_keys(node) for path, node in _target_nodes(cfg) if unbound_keys(node)}
    assert found == {"data": ["colums"], "task.sts": ["sed"], "hydra.sweeper.sampler": ["sed"]}


@pytest.mark.parametrize("kind", ["MODEL", "DATA", "SCHEDULER", "TASK", "LOGGER"])
def test_the_schema_names_exactly_the_parameters_of_nlpexp_s_own_classes(kind):
    """A group the schema lists by hand (a task's, a logger's: modules too heavy to import for a check) has the keys
    its class's signature has, no stale one and none missing; the others are derived from it (nlpexp.derived)."""
    from nlpexp import schema
    from nlpexp.derived import _derived
    from nlpexp.rules import ByTarget

    rule = getattr(schema, kind)
    for target, group in rule.groups.items():
        from_signature = _derived(get_object(target), ByTarget({}, bound=rule.bound), partial=False)
        assert (set(group.fields), group.open) == (set(from_signature.fields), from_signature.open), target
