"""A project of its own adds a loss, a model, a dataset and a task to nlpexp with no edit of nlpexp
(tests/user_project, the walk-through of docs/extending.md): installed with pip, its configs brought in by
`hydra.searchpath=[pkg://my_lab.conf]`, run through a real `python run.py`. What nobody declared stays refused."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Literal

import pytest
import yaml

from nlpexp import components, schema
from nlpexp.config import PROJECT_ROOT
from nlpexp.derived import group_of
from nlpexp.rules import Num
from tests import forkserver

USER_PROJECT = Path(__file__).parent / "user_project"
SEARCH_PATH = "hydra.searchpath=[pkg://my_lab.conf]"
SMOKE = ("experiment=my_lab_smoke", "debug=smoke", "logger=none")


def pip_install(project: Path, site: Path) -> None:
    """`pip install --target`, offline: the project is built with the setuptools already installed."""
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--disable-pip-version-check", "--target", str(site), str(project)], check=True, timeout=300,
                   capture_output=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """my_lab installed into a folder of its own (a copy of the project is built: the checkout stays clean)."""
    root = tmp_path_factory.mktemp("user_project")
    shutil.copytree(USER_PROJECT, root / "project", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    pip_install(root / "project", root / "site")
    return root / "site"


def run_py(args, sites: list[Path], tmp_path: Path, env_extra=None) -> subprocess.CompletedProcess:
    path = os.pathsep.join([*map(str, sites), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return forkserver.run([sys.executable, str(PROJECT_ROOT / "run.py"), SEARCH_PATH, *args,
                           f"hydra.run.dir={tmp_path / 'run'}", f"paths.ledger_file={tmp_path / 'ledger.jsonl'}"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)


def one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    errors = [line for line in (done.stdout + done.stderr).splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    return errors[0]


def walkthrough() -> str:
    """The commands of docs/extending.md's walk-through (its ```bash user-project``` block)."""
    text = (PROJECT_ROOT / "docs" / "extending.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```bash user-project\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert len(blocks) == 1, "docs/extending.md has one walk-through block"
    return blocks[0]


def test_the_walkthrough_runs_a_user_task_model_dataset_and_loss_with_no_edit_of_nlpexp(tmp_path, data_root):
    env = {**os.environ, "NLPEXP_DATA_DIR": str(data_root), "HF_HUB_OFFLINE": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    # its `python` and `pip` commands as written; `python` forks from a pre-imported interpreter where it can
    done = subprocess.run(["bash", "-c", "set -euo pipefail\n" + walkthrough().replace("/tmp/", f"{tmp_path}/")],
                          cwd=PROJECT_ROOT, env=forkserver.shim_env(env), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout[-2000:] + done.stderr[-3000:]
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    # my_lab's task scored the run with its own evaluator (nlpexp has no retrieval_accuracy)
    assert {"val/retrieval_accuracy", "start/retrieval_accuracy", "train/mean_loss"} <= set(metrics), metrics
    assert done.stdout.strip().splitlines()[-1] == str(metrics["val/retrieval_accuracy"])
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["task"]["_target_"] == "my_lab.tasks.PairRetrievalTask"
    assert config["loss"]["_target_"] == "my_lab.losses.InfoNCELoss"
    assert config["data"]["_target_"] == "my_lab.data.EntailmentPairs"
    # my_lab's model added its projection to what was trained and saved
    modules = json.loads((run / "best_model" / "modules.json").read_text())
    assert any(m["type"].endswith("Dense") for m in modules), modules
    ledger = Path(os.environ["NLPEXP_LEDGER_DIR"]) / "ledger.jsonl"
    record = [json.loads(line) for line in ledger.read_text().splitlines()][-1]
    assert record["status"] == "ok" and record["task"] == "PairRetrievalTask" and record["model"] == "tiny_projected"
    assert not (USER_PROJECT / "build").exists()  # pip built the copy, not the checkout


def test_a_user_loss_key_is_checked_against_its_own_signature(site, tmp_path):
    line = one_error_line(run_py([*SMOKE, "+loss.temprature=0.1"], [site], tmp_path))
    assert "loss.temprature is not a setting; did you mean loss.temperature?" in line
    line = one_error_line(run_py([*SMOKE, "model.projection_dim=wide"], [site], tmp_path))
    assert "model.projection_dim must be an integer, got 'wide'" in line
    # the model subclasses nlpexp's ModelSpec: its rules hold for it too
    assert "model.pooling must be one of" in one_error_line(run_py([*SMOKE, "model.pooling=sum"], [site], tmp_path))


def test_a_component_nobody_declared_is_refused(site, tmp_path):
    line = one_error_line(run_py([*SMOKE, "optimizer._target_=torch.optim.SGD"], [site], tmp_path))
    assert line.startswith("error: optimizer._target_='torch.optim.SGD' is not allowed")
    assert not (tmp_path / "run").exists()


def test_the_person_running_it_may_trust_more_in_the_environment(site, tmp_path):
    done = run_py([*SMOKE, "optimizer._target_=torch.optim.SGD", "--cfg", "job"], [site], tmp_path,
                  env_extra={"NLPEXP_TRUST_TARGETS": "torch.optim.SGD"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "_target_: torch.optim.SGD" in done.stdout


def test_a_pattern_over_a_package_the_distribution_does_not_ship_is_refused(site, tmp_path_factory, tmp_path):
    """A package may declare `my_lab.*` for its own my_lab, not `torch.*` for someone else's code."""
    project = tmp_path_factory.mktemp("sneaky")
    (project / "sneaky").mkdir()
    (project / "sneaky" / "__init__.py").write_text("")
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "sneaky"\nversion = "0.1"\n'
        '[project.entry-points."nlpexp.components"]\ntorch = "torch"\n'
        '[tool.setuptools]\npackages = ["sneaky"]\n')
    pip_install(project, project / "site")
    line = one_error_line(run_py([*SMOKE, "optimizer._target_=torch.optim.SGD"], [project / "site", site], tmp_path))
    assert "sneaky declares the pattern torch.* but does not ship the package torch" in line


WIDENING = {
    "env_set": "hydra:\n  job:\n    env_set:\n      NLPEXP_TRUST_TARGETS: torch.optim.SGD\n",
    "env_set_and_target": "hydra:\n  job:\n    env_set:\n      NLPEXP_TRUST_TARGETS: torch.optim.SGD\n"
                          "optimizer:\n  _target_: torch.optim.SGD\n",
}


@pytest.mark.parametrize("case", WIDENING)
def test_a_config_file_cannot_widen_trust(case, site, tmp_path):
    presets = tmp_path / "cd" / "experiment"
    presets.mkdir(parents=True)
    (presets / "widen.yaml").write_text("# @package _global_\n" + WIDENING[case])
    line = one_error_line(run_py(["--config-dir", str(tmp_path / "cd"), "experiment=widen", "debug=smoke",
                                  "logger=none"], [site], tmp_path))
    # refused either for the variable (a file may not set the job's environment) or for the target it would admit
    assert ("env_set.NLPEXP_TRUST_TARGETS may not be set by a config file" in line
            or "'torch.optim.SGD' is not allowed" in line), line
    assert not (tmp_path / "run").exists()


# -- the rules, in-process --------------------------------------------------------------------------------------


class ScaledLoss:
    def __init__(self, model, scale: float, mode: Literal["sum", "mean"] = "mean", note: str = "",
                 cap: int | None = None, tag: Unresolved = None, normalize: bool = True):  # noqa: F821
        pass


class KeywordsLoss(ScaledLoss):
    def __init__(self, *, margin: float = 0.5, **kwargs):
        super().__init__(**kwargs)


class RangedLoss:
    def __init__(self, model, margin: Annotated[float, Num(0, 1)] = 0.5, names: Sequence[str] = (),
                 weights: Mapping[str, int] | None = None):
        pass


def open_factory(params, size: int = 2, **options):
    return None


@pytest.fixture
def trusted(monkeypatch):
    """This module's classes trusted by the person running the tests (the allow-list is computed afresh)."""
    monkeypatch.setenv("NLPEXP_TRUST_TARGETS", f"{__name__}.*")
    components.allowlist.cache_clear()
    components._added.cache_clear()
    yield
    monkeypatch.undo()
    components.allowlist.cache_clear()
    components._added.cache_clear()


def test_a_signature_gives_names_and_rules(trusted):
    group = group_of(schema.LOSS, {"_target_": f"{__name__}.KeywordsLoss", "scale": 1.0})
    # a base's settings first, as a task's monitor precedes its own; `model` is bound
    assert list(group.fields) == ["scale", "mode", "note", "cap", "tag", "normalize", "margin"]
    assert not group.open and group.required == ("scale",)
    rules = {key: str(rule) for key, rule in group.fields.items()}
    assert rules == {"margin": "a number", "scale": "a number", "mode": "one of sum, mean", "note": "a string",
                     "cap": "an integer or null", "tag": "anything", "normalize": "true or false"}
    assert group.fields["note"].ok("") and not group.fields["cap"].ok(True)
    partial = group_of(schema.LOSS, {"_target_": f"{__name__}.KeywordsLoss", "_partial_": True})
    assert partial.required == ()  # the task completes a `_partial_` node


def test_a_range_is_declared_once_on_the_parameter_as_nlpexp_s_own_are(trusted):
    group = group_of(schema.LOSS, {"_target_": f"{__name__}.RangedLoss"})
    assert {key: str(rule) for key, rule in group.fields.items()} == {
        "margin": "a number in [0, 1]", "names": "a list of (a string)",
        "weights": "a mapping of names to an integer or null"}
    assert not group.fields["margin"].ok(1.5) and not group.fields["weights"].ok({"a": "x"})
    assert str(schema.TRAINER.fields["batch_size"]) == "a positive integer"  # TrainerSettings' own annotation


def test_kwargs_that_reach_no_class_leave_the_node_open_and_nlpexp_s_own_keys_keep_their_rules(trusted):
    group = group_of(schema.OPTIMIZER, {"_target_": f"{__name__}.open_factory"})
    assert group.open and set(group.fields) == {"size", "lr", "head_lr", "weight_decay"}
    assert str(group.fields["lr"]) == "a positive number" and group.required == ("lr",)


def test_nlpexp_s_own_components_keep_the_schema_s_groups():
    node = {"_target_": "sentence_transformers.sentence_transformer.losses.CosineSimilarityLoss"}
    assert group_of(schema.LOSS, node) is schema.LOSS.other  # built-in and undescribed: as before, nothing imported


@pytest.mark.parametrize("trust", ["exact", "pattern"])
def test_an_exact_entry_may_name_a_re_export_a_pattern_may_not_launder_one(trust, monkeypatch):
    """`Linear` here is torch's: trusted by its exact name, it is built (Hydra checks the class it makes by its
    defining name, which for_building adds); a pattern over this module does not extend to torch's code."""
    import torch

    from nlpexp import NlpexpError
    from nlpexp.config import instantiate

    monkeypatch.setattr(sys.modules[__name__], "Linear", torch.nn.Linear, raising=False)
    monkeypatch.setenv("NLPEXP_TRUST_TARGETS", f"{__name__}.Linear" if trust == "exact" else f"{__name__}.*")
    for cache in (components.allowlist, components._added):
        cache.cache_clear()
    node = {"_target_": f"{__name__}.Linear", "in_features": 2, "out_features": 1}
    try:
        if trust == "exact":
            assert isinstance(instantiate(node), torch.nn.Linear)
        else:
            with pytest.raises(NlpexpError, match="torch.nn.modules.linear.Linear"):
                instantiate(node)
    finally:
        monkeypatch.undo()
        for cache in (components.allowlist, components._added):
            cache.cache_clear()


def test_what_nobody_trusts_is_not_imported_to_read_its_signature(tmp_path, monkeypatch):
    (tmp_path / "noisy.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\nclass Loss: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert group_of(schema.LOSS, {"_target_": "noisy.Loss"}) is schema.LOSS.other
    assert not (tmp_path / "imported").exists()


def test_an_editable_install_ships_what_its_project_holds(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "src" / "edpkg").mkdir(parents=True)
    (project / "src" / "edpkg" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(project / "src"))
    info = tmp_path / "site" / "edpkg-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: edpkg\nVersion: 0.1\n")
    (info / "RECORD").write_text("__editable__.edpkg-0.1.pth,,\nedpkg-0.1.dist-info/METADATA,,\n")
    (info / "direct_url.json").write_text(json.dumps({"url": project.as_uri(), "dir_info": {"editable": True}}))
    dist = importlib.metadata.PathDistribution(info)
    assert components._ships(dist, "edpkg")
    assert not components._ships(dist, "json")  # installed, but not from this project
    (info / "direct_url.json").write_text(json.dumps({"url": (tmp_path / "other").as_uri(),
                                                      "dir_info": {"editable": True}}))
    assert not components._ships(dist, "edpkg")
