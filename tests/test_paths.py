"""The user's files (ledger, registry, cache) stay out of reach of the tests, whatever a test forgets."""

from __future__ import annotations

import os
import subprocess
import sys

from nlpexp.config import PROJECT_ROOT, compose


def test_default_paths_honour_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NLPEXP_LEDGER_FILE", str(tmp_path / "l.jsonl"))
    monkeypatch.setenv("NLPEXP_REGISTRY_DIR", str(tmp_path / "reg"))
    paths = compose(["paths.output_dir=unused"]).paths
    assert (paths.ledger_file, paths.registry_dir) == (str(tmp_path / "l.jsonl"), str(tmp_path / "reg"))


def test_the_suite_points_every_user_path_into_tmp():
    """conftest's session-wide variables: a run() with no paths.ledger_file override lands in tmp."""
    paths = compose(["paths.output_dir=unused"]).paths
    for key in ("ledger_file", "registry_dir", "cache_dir"):
        assert not paths[key].startswith(str(PROJECT_ROOT)), key
        assert not paths[key].startswith(os.path.expanduser("~/.cache")), key


def test_without_the_variables_the_ledger_is_the_projects():
    env = {k: v for k, v in os.environ.items() if k not in ("NLPEXP_LEDGER_FILE", "NLPEXP_REGISTRY_DIR")}
    code = "from nlpexp.config import compose; p = compose(['paths.output_dir=x']).paths; " \
           "print(p.ledger_file); print(p.registry_dir)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [str(PROJECT_ROOT / "outputs" / "ledger.jsonl"), str(PROJECT_ROOT / "models")]
