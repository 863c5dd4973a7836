"""`python run.py --help` and `nlpexp --help`: generated from conf/ and experiments/, at most 40 lines of 100 columns,
no internal group, no redacted text, presets described by a whole first sentence."""

from __future__ import annotations

import os
import subprocess
import sys

from omegaconf import OmegaConf

from nlpexp.config import CONFIG_DIR, PRESETS_DIR, PROJECT_ROOT
from nlpexp.help import describe_groups, describe_presets, first_sentence, help_text
from tests import forkserver


def _run_help(*args: str) -> subprocess.CompletedProcess:
    return forkserver.run([sys.executable, str(PROJECT_ROOT / "run.py"), *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "100"})


def test_help_fits_40_lines_of_100_columns_and_lists_every_group_option_and_preset():
    done = _run_help("--help")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    lines = done.stdout.rstrip("\n").splitlines()
    assert len(lines) <= 40 and max(map(len, lines)) <= 100, done.stdout
    words = done.stdout.split()
    for group in (p for p in CONFIG_DIR.iterdir() if p.is_dir() and p.name not in ("hydra", "hparams_search")):
        assert f"{group.name}:" in words, group
        assert all(f.stem in words for f in group.glob("*.yaml")), group
    for preset in [*PRESETS_DIR.glob("*.yaml"), *(CONFIG_DIR / "hparams_search").glob("*.yaml")]:
        assert any(line.split()[:1] == [preset.stem] and len(line.split()) > 1 for line in lines), preset
    # the internal groups of debug=smoke, and Hydra's own groups, are not options a user picks
    assert "smoke_model" not in done.stdout and "smoke_task" not in done.stdout and "hydra/" not in done.stdout
    assert "usage: python run.py [GROUP=OPTION ...] [KEY=VALUE ...]" in done.stdout and "<redacted>" not in done.stdout
    assert "Powered by Hydra" not in done.stdout


def test_help_is_the_same_with_a_secret_in_the_environment_and_with_overrides():
    secret_env = {**os.environ, "COLUMNS": "100", "MY_API_KEY": "VALUE ...]"}  # a value the usage line contains
    done = forkserver.run([sys.executable, str(PROJECT_ROOT / "run.py"), "task=embedding", "-h"],
                          capture_output=True, text=True, timeout=120, env=secret_env)
    assert done.returncode == 0 and done.stdout.strip() == help_text().strip(), done.stderr


def test_no_resolver_reads_folders_for_the_help():
    # issue 26: `${nlpexp_presets:/any/dir}` listed the files and first comment lines of any folder
    import nlpexp.config  # noqa: F401  (registers the project's resolvers)

    assert not OmegaConf.has_resolver("nlpexp_presets")
    template = (CONFIG_DIR / "hydra" / "help" / "nlpexp.yaml").read_text()
    assert "${nlpexp" not in template


def test_a_new_preset_appears_with_its_whole_first_sentence(tmp_path):
    (tmp_path / "mine.yaml").write_text(
        "# @package _global_\n# My preset (Thakur et al. 2021, e.g. NLI): a short run. More words here.\nseed: 1\n")
    (tmp_path / "bare.yaml").write_text("seed: 1\n")
    assert first_sentence(tmp_path / "mine.yaml") == "My preset (Thakur et al. 2021, e.g. NLI): a short run"
    assert describe_presets(sorted(tmp_path.glob("*.yaml"))).splitlines() == [
        "  bare", "  mine  My preset (Thakur et al. 2021, e.g. NLI): a short run"]
    long = tmp_path / "long.yaml"
    long.write_text("# " + "word " * 40 + "end.\n")
    assert all(len(line) <= 100 for line in describe_presets([long]).splitlines())
    assert describe_presets([long]).endswith(" ...")


def test_groups_are_packed_top_level_only(tmp_path):
    for group, options in {"task": ["a", "b"], "debug": ["smoke"], "hydra": ["x"]}.items():
        (tmp_path / group).mkdir()
        for option in options:
            (tmp_path / group / f"{option}.yaml").write_text("{}\n")
    (tmp_path / "debug" / "smoke_model").mkdir()
    (tmp_path / "debug" / "smoke_model" / "bert.yaml").write_text("{}\n")
    assert describe_groups(tmp_path) == "  debug: smoke   task: a b"  # longest first, on one line


def test_nlpexp_help_describes_each_command():
    from nlpexp.cli import COMMANDS

    done = forkserver.run([sys.executable, "-m", "nlpexp.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    described = {line.split()[0] for line in done.stdout.splitlines()[1:] if line.startswith("  ")}
    assert described == set(COMMANDS) and all(len(line) <= 100 for line in done.stdout.splitlines())
    bare = forkserver.run([sys.executable, "-m", "nlpexp.cli"], capture_output=True, text=True, timeout=60)
    assert bare.returncode == 2 and "registry" in bare.stderr


def test_hydras_own_flags_are_still_read_from_its_parser():
    """nlpexp.adapters: Hydra's private parser the flag guidance reads; fails when Hydra changes it."""
    from nlpexp.adapters import command_line_flags

    assert {"-m", "--multirun", "--cfg", "-cd", "--config-dir", "--help", "--hydra-help", "--info"} <= \
        command_line_flags()
