"""Every command the docs mark runnable (a ```bash runnable``` or ```python runnable``` fence in README.md or
docs/*.md) runs as written, on the tests' tiny data, with /tmp/ paths moved into the test's tmp dir.

A page's blocks run in order in one shell, so that a later block may use what an earlier one made."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nlpexp.config import PROJECT_ROOT
from tests import forkserver
from tests.services import venv_first

FENCE = re.compile(r"^```(bash|python) runnable\n(.*?)^```", re.MULTILINE | re.DOTALL)
PAGES = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]


def runnable_blocks(page: Path) -> list[tuple[str, str]]:
    return FENCE.findall(page.read_text(encoding="utf-8"))


def test_the_readme_marks_its_main_commands_runnable():
    commands = "".join(code for _, code in runnable_blocks(PROJECT_ROOT / "README.md"))
    assert "python run.py task=sbert_nli model=tiny_bert debug=smoke" in commands and "nlpexp runs" in commands


@pytest.mark.parametrize("page", [p for p in PAGES if runnable_blocks(p)], ids=lambda p: p.name)
def test_runnable_commands_run(page, tmp_path, data_root):
    # this interpreter's folder leads PATH (as after the README's `. .venv/bin/activate`): tests/services.py puts it
    # first for the whole session, so the commands fork from the same server as every other test's
    env = {**os.environ, "NLPEXP_DATA_DIR": str(data_root), "HF_HUB_OFFLINE": "1",
           "PATH": venv_first(os.environ["PATH"])}
    for number, (language, code) in enumerate(runnable_blocks(page)):
        code = code.replace("/tmp/", f"{tmp_path}/")
        # the shell's `python` and `nlpexp`, and a python block, fork from a pre-imported interpreter where they can
        # (tests/forkserver.py): each runs as a fresh process would
        if language == "bash":
            done = subprocess.run(["bash", "-c", f"set -euo pipefail\n{code}"], cwd=PROJECT_ROOT,
                                  env=forkserver.shim_env(env), capture_output=True, text=True, timeout=600)
        else:
            done = forkserver.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True,
                                  text=True, timeout=600)
        assert done.returncode == 0, f"{page.name} block {number}:\n{code}\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr, f"{page.name} block {number}:\n{done.stderr[-3000:]}"
