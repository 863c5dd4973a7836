"""The user's files (ledger, registry, cache) stay out of reach of the tests, whatever a test forgets."""

from __future__ import annotations

import os
import subprocess
import sys

from nlpexp.config import PROJECT_ROOT, compose


def test_default_paths_honour_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NLPEXP_LEDGER_DIR", str(tmp_path / "l"))
    monkeypatch.setenv("NLPEXP_REGISTRY_DIR", str(tmp_path / "reg"))
    paths = compose(["paths.output_dir=unused"]).paths
    assert (paths.ledger_file, paths.registry_dir) == (str(tmp_path / "l" / "ledger.jsonl"), str(tmp_path / "reg"))


def test_the_ledger_value_keeps_its_jsonl_suffix_as_written():
    """The safety gate checks the raw value of paths.ledger_file ends in .jsonl (no appending to a shell rc file):
    the variable names a folder, the file name stays in the config."""
    cfg = compose(["paths.output_dir=unused"])
    assert cfg.paths._get_node("ledger_file")._value().endswith("/ledger.jsonl")


def test_the_suite_points_every_user_path_into_tmp():
    """conftest's session-wide variables: a run() with no paths.ledger_file override lands in tmp."""
    paths = compose(["paths.output_dir=unused"]).paths
    for key in ("ledger_file", "registry_dir", "cache_dir"):
        assert not paths[key].startswith(str(PROJECT_ROOT)), key
        assert not paths[key].startswith(os.path.expanduser("~/.cache")), key


def test_without_the_variables_the_ledger_is_the_projects():
    env = {k: v for k, v in os.environ.items() if k not in ("NLPEXP_LEDGER_DIR", "NLPEXP_REGISTRY_DIR")}
    code = "from nlpexp.config import compose; p = compose(['paths.output_dir=x']).paths; " \
           "print(p.ledger_file); print(p.registry_dir)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [str(PROJECT_ROOT / "outputs" / "ledger.jsonl"), str(PROJECT_ROOT / "models")]
