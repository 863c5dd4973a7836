"""Every option of every group composes, every `_target_` resolves, presets are deltas."""

from __future__ import annotations

import pytest
from hydra.utils import execution_whitelist, get_method
from omegaconf import DictConfig, ListConfig, OmegaConf

from nlpexp import NlpexpError
from nlpexp.components import BUILTIN_TARGETS as TARGET_ALLOWLIST
from nlpexp.config import CONFIG_DIR, PRESETS_DIR, compose, group_dir
from nlpexp.schema import validate

GROUPS = sorted(p.name for p in CONFIG_DIR.iterdir() if p.is_dir() and p.name != "hydra")


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in group_dir(group).glob("*.yaml"))


def _targets(node, path="") -> list[tuple[str, str]]:
    found = []
    if isinstance(node, DictConfig):
        if "_target_" in node:
            found.append((path, node._target_))
        for key in node:
            found += _targets(node._get_node(key), f"{path}.{key}")
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node):
            found += _targets(item, f"{path}[{i}]")
    return found


def _assert_targets_resolve(cfg: DictConfig) -> None:
    with execution_whitelist(TARGET_ALLOWLIST, reset=True):
        for path, target in _targets(cfg):
            assert any(target.startswith(p[:-1]) for p in TARGET_ALLOWLIST), f"{path}: {target} not allowed"
            assert callable(get_method(target)), f"{path}: {target}"


def test_every_group_has_options():
    for group in ("task", "model", "data", "optimizer", "scheduler", "logger", "trainer", "paths", "debug"):
        assert _options(group), group


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)])
def test_every_option_composes_and_its_targets_resolve(compose_run, group, option):
    cfg = compose_run(f"{group}={option}")
    OmegaConf.resolve(cfg)
    _assert_targets_resolve(cfg)


@pytest.mark.parametrize("preset", _options("experiment"))
def test_every_experiment_composes(compose_run, preset):
    text = (PRESETS_DIR / f"{preset}.yaml").read_text()
    assert text.startswith("# @package _global_"), "presets are global deltas"
    cfg = compose_run(f"experiment={preset}")
    OmegaConf.resolve(cfg)
    _assert_targets_resolve(cfg)


def test_seed_002s_encoders_and_batches_are_overrides_of_imdb(compose_run):
    """No preset per encoder or batch (docs/tasks.md): `experiment=imdb model=<encoder>` and a multirun over
    trainer.gradient_accumulation_steps=4,16,64 give seed 002's effective batches 64 / 256 / 1024."""
    assert compose_run("experiment=imdb").model.name == "minilm"  # the default encoder: bundled, offline
    for steps, effective in ((4, 64), (16, 256), (64, 1024)):
        cfg = compose_run("experiment=imdb", "model=modernbert", f"trainer.gradient_accumulation_steps={steps}")
        assert (cfg.model.name, cfg.data.name, cfg.optimizer._target_) == ("modernbert", "imdb", "torch.optim.Adam")
        assert cfg.trainer.batch_size * cfg.trainer.gradient_accumulation_steps == effective


def test_presets_are_found_through_the_search_path_not_a_symlink():
    """experiments/ joins Hydra's search path (hydra_plugins/nlpexp_presets): a symlink in conf/ breaks on Windows
    and in an sdist, so none may come back; Hydra's own listing of the group is the folder."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    assert not [p for p in CONFIG_DIR.rglob("*") if p.is_symlink()]
    assert not (CONFIG_DIR / "experiment").exists()
    assert len(_options("experiment")) > 5
    with initialize_config_dir(config_dir=str(CONFIG_DIR)):
        assert GlobalHydra.instance().config_loader().get_group_options("experiment") == _options("experiment")


def test_other_hydra_apps_get_no_experiment_group():
    """The search path plugin is installed for every Hydra app in the environment: it adds the presets to nlpexp's."""
    from pathlib import Path

    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_dir(config_dir=str(Path(__file__).parent / "sweeper_app" / "conf")):
        assert GlobalHydra.instance().config_loader().get_group_options("experiment") == []


def test_a_preset_option_cannot_reach_outside_the_folder(compose_run):
    for option in ("../conf/config", "/../conf/config", "data/imdb"):
        with pytest.raises(NlpexpError):
            compose_run(f"experiment={option}")


def test_default_config_is_the_main_job(compose_run):
    cfg = compose_run()
    assert cfg.model.name == "minilm" and cfg.data.name == "allnli"
    assert cfg.optimized_metric == "val/spearman_cosine"


def test_several_loggers_at_once(compose_run):
    cfg = compose_run("logger=[tensorboard,wandb]")
    assert set(cfg.logger) == {"tensorboard", "wandb"}


def test_unknown_option_lists_the_valid_ones(compose_run):
    with pytest.raises(NlpexpError, match="model=nope is not an option; options of model: .*bert, .*minilm"):
        compose_run("model=nope")


def test_misspelled_key_is_refused_with_a_suggestion(compose_run):
    with pytest.raises(NlpexpError, match="trainer.batchsize is not a setting; did you mean trainer.batch_size?"):
        compose_run("trainer.batchsize=4")


def _shipped() -> list:
    generators = {"bart", "kobart", "kogpt2", "mt5", "t5", "tiny_bart", "tiny_gpt2", "tiny_mt5", "tiny_t5",
                  "bert2bert_minilm", "tiny_bert2bert"}
    return [*([f"experiment={e}"] for e in _options("experiment")),
            *([f"hparams_search={h}"] for h in _options("hparams_search")),
            *([f"model={m}", *(["task=summarization", "data=dialogsum"] if m in generators else [])]
              for m in _options("model"))]


@pytest.mark.parametrize("overrides", _shipped(), ids=" ".join)
def test_every_shipped_config_passes(overrides, tmp_path):
    """The schema refuses nothing the project ships: each experiment, sweep preset (Hydra's node included) and model."""
    validate(compose([f"paths.output_dir={tmp_path}/run", f"paths.ledger_file={tmp_path}/l.jsonl", *overrides],
                     with_hydra=overrides[0].startswith("hparams")))


def test_without_the_checkout_run_py_says_how_to_find_it(tmp_path):
    """A non-editable install finds no conf/ beside its sources: one line naming the two fixes, exit 2."""
    import os
    import sys

    from nlpexp.config import PROJECT_ROOT
    from tests import forkserver

    done = forkserver.run([sys.executable, str(PROJECT_ROOT / "run.py"), "--cfg", "job"], capture_output=True,
                          text=True, env={**os.environ, "NLPEXP_ROOT": str(tmp_path)}, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [f"error: no nlpexp config at {tmp_path}/conf: install the checkout "
                                                "editable (pip install -e <checkout>) or set NLPEXP_ROOT=<checkout>"]
