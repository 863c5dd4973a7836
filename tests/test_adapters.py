"""Every private library call of nlpexp.adapters, exercised: an upstream change (a renamed or removed private
member, a changed return) fails here first, naming the adapter to fix."""

from __future__ import annotations

from omegaconf import OmegaConf

from nlpexp import adapters
from nlpexp.adapters import child, is_interpolation, is_none, raw
from nlpexp.config import CONFIG_DIR, PROJECT_ROOT


def test_omegaconf_nodes_as_written():
    cfg = OmegaConf.create({"a": "${b}", "b": 1, "c": None, "d": [{"e": "${b}"}], "f": "${b}"})
    assert raw(child(cfg, "a")) == "${b}" and raw(child(cfg, "b")) == 1 and raw(3) == 3
    assert raw(child(child(child(cfg, "d"), 0), "e")) == "${b}"
    assert is_none(child(cfg, "c")) and not is_none(child(cfg, "b"))
    assert is_interpolation(child(cfg, "a")) and not is_interpolation(child(cfg, "b"))


def test_hydra_start_up_and_defaults_list(tmp_path):
    from hydra.core.global_hydra import GlobalHydra

    args = adapters.args_parser().parse_intermixed_args(["-m", "-cd", str(tmp_path), "model=tiny_bert"])
    assert args.multirun and args.config_dir == str(tmp_path) and args.overrides == ["model=tiny_bert"]
    try:
        hydra = adapters.main_hydra(str(PROJECT_ROOT / "run.py"), str(CONFIG_DIR), str(tmp_path))
        sources = adapters.sources(hydra, "config", ["model=tiny_bert"])
        assert f"file://{tmp_path}" in sources and f"file://{CONFIG_DIR}" in sources
        loaded = list(adapters.loaded_configs(hydra, "config", ["model=tiny_bert"], multirun=False))
    finally:
        GlobalHydra.instance().clear()
    model = [(source, config) for source, path, config in loaded if path == "model/tiny_bert"]
    assert model and model[0][0] == f"file://{CONFIG_DIR}" and model[0][1].model.name == "tiny_bert"


def test_a_failed_jobs_error_without_hydras_stderr_line(capfd):
    from hydra.core.utils import JobReturn, JobStatus

    failed = JobReturn(status=JobStatus.FAILED, _return_value=ValueError("boom"))
    assert isinstance(adapters.job_error(failed), ValueError) and "Error executing" not in capfd.readouterr().err
    assert adapters.job_error(JobReturn(status=JobStatus.COMPLETED, _return_value=0.5)) is None
