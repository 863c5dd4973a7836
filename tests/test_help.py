"""`python run.py --help`: groups, their options and the presets, all read from conf/."""

from __future__ import annotations

import subprocess
import sys

from nlpexp.config import CONFIG_DIR, PROJECT_ROOT
from nlpexp.help import describe_group


def test_help_lists_every_group_option_and_preset():
    done = subprocess.run([sys.executable, str(PROJECT_ROOT / "run.py"), "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    groups = sorted(p.name for p in CONFIG_DIR.iterdir() if p.is_dir() and p.name != "hydra")
    lines = {line.split(":", 1)[0]: line.split(":", 1)[1] for line in text.splitlines() if ": " in line}
    for group in groups:
        options = sorted(f.stem for f in (CONFIG_DIR / group).glob("*.yaml"))
        assert [o.strip() for o in lines[group].split(",")] == options, group
    for preset in [*(CONFIG_DIR / "experiment").glob("*.yaml"), *(CONFIG_DIR / "hparams_search").glob("*.yaml")]:
        assert any(line.split()[:1] == [preset.stem] and len(line.split()) > 1 for line in text.splitlines()), preset
    assert "usage: python run.py" in text and "Powered by Hydra" not in text


def test_a_new_preset_appears_with_its_first_comment_sentence(tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text(
        "# @package _global_\n# My preset: a short run. More words here.\ntrainer:\n  max_steps: 3\n")
    (tmp_path / "experiment" / "bare.yaml").write_text("seed: 1\n")
    assert describe_group("experiment", tmp_path).splitlines() == ["  bare", "  mine  My preset: a short run"]
