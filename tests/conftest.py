from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

from nlpexp.config import PROJECT_ROOT
from tests.fixtures import make_data_root

# tests.services: the real servers the tests start (one MLflow server per process); tests.forkshare: the fork
# servers of an xdist run, one per environment, not one per process; tests.caches: what the test processes compute
# once (parsed config files and interpolations, the stored presets, Hydra's merge of a defaults list);
# tests.cards: model cards' YAML through libyaml where its output is the same. (Caching Hydra's load of each config
# of a defaults tree too cost more than it saved: 76.9 against 71.4 CPU-s on three compose-heavy files.)
pytest_plugins = ["tests.services", "tests.forkshare", "tests.caches", "tests.cards"]

# W&B offline: `dryrun` is W&B's and nlpexp's other name for `offline` (the same runs, files and messages), but
# transformers prints a line at import for the literal `offline`, which keeps a `python run.py` of the tests from
# being forked from a server that imported the Trainer already (tests/forkserver.py PRINT_ON_IMPORT)
os.environ.setdefault("WANDB_MODE", "dryrun")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ["HF_HUB_OFFLINE"] = "1"  # tests never touch the network


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    return make_data_root(tmp_path_factory.mktemp("data"))


USER_LEDGER = PROJECT_ROOT / "outputs" / "ledger.jsonl"


@pytest.fixture(scope="session", autouse=True)
def _user_paths_env(tmp_path_factory):
    """The ledger, the registry, the tokenised-data cache and run dirs go to tmp dirs, never outputs/, multirun/,
    models/ or ~/.cache:
    conf/paths/default.yaml honours these variables, so a test that forgets paths.ledger_file=... (a module
    fixture, a subprocess: both inherit the environment) still cannot touch the user's files. Session-wide, so
    that module-scoped fixtures that run a job (before any function-scoped fixture) are covered too."""
    user = tmp_path_factory.mktemp("user")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NLPEXP_CACHE_DIR", str(user / "cache"))
        mp.setenv("NLPEXP_LEDGER_DIR", str(user))
        mp.setenv("NLPEXP_REGISTRY_DIR", str(user / "registry"))
        mp.setenv("NLPEXP_RUNS_DIR", str(user / "outputs"))  # a run without hydra.run.dir / paths.output_dir
        mp.setenv("NLPEXP_SWEEPS_DIR", str(user / "multirun"))
        yield


def pytest_sessionstart(session):
    session.config.stash[_LEDGER_BEFORE] = _state(USER_LEDGER)


def pytest_sessionfinish(session, exitstatus):
    """The suite fails if it created or changed the user's ledger (outputs/ledger.jsonl of this checkout)."""
    if _state(USER_LEDGER) != session.config.stash.get(_LEDGER_BEFORE, None):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\nerror: the tests wrote into the user's ledger {USER_LEDGER}", file=sys.stderr)


_LEDGER_BEFORE = pytest.StashKey[tuple | None]()


def _state(path: Path) -> tuple | None:
    return (path.stat().st_size, path.stat().st_mtime_ns) if path.is_file() else None


@pytest.fixture(scope="session", autouse=True)
def _absl_handler_on_real_stderr():
    """absl (imported by rouge-score) binds its log handler to the sys.stderr of its import: here pytest's capture
    stream. Its close() closes that stream unless it is the *current* sys.stderr, and Hydra's logging set-up closes
    every handler: an in-process sweep under capsys then closed pytest's own capture file. sys.__stderr__ is never
    closed by it."""
    from absl import logging as absl_logging

    absl_logging.get_absl_handler().python_handler.setStream(sys.__stderr__)


@pytest.fixture(autouse=True)
def _data_dir_env(data_root, monkeypatch, tmp_path):
    monkeypatch.setenv("NLPEXP_DATA_DIR", str(data_root))
    monkeypatch.setenv("NLPEXP_REGISTRY_DIR", str(tmp_path / "registry"))


@pytest.fixture
def compose_run(tmp_path):
    """Compose the run config as `python run.py` would, with the run dir under tmp_path."""
    from nlpexp.config import compose

    def _compose(*overrides: str, run_dir: Path | None = None):
        out = run_dir or tmp_path / "run"
        return compose([f"paths.output_dir={out}", f"paths.ledger_file={tmp_path / 'ledger.jsonl'}", *overrides])

    return _compose


@pytest.fixture(autouse=True)
def _quiet_logs():
    logging.getLogger("sentence_transformers").setLevel(logging.WARNING)


@pytest.fixture(scope="session", autouse=True)
def _model_card_template_compiled_once():
    """sentence-transformers writes a model card (README.md) at every save, and huggingface_hub compiles its Jinja
    template anew each time: a third of the CPU time of a tiny sentence-transformers run. A template compiled from
    the same source in the same environment renders the same card, so the tests compile each source once."""
    import jinja2

    from tests.forkwarm import template_cache

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(jinja2.Environment, "from_string", template_cache(jinja2.Environment.from_string))
        yield


_modules_when_frozen = 0


@pytest.fixture(autouse=True)
def _imports_kept_out_of_gc():
    """Every run calls gc.collect (the trainers at each train, nlpexp.trainer.release_memory at each end), and a full
    collection walks every tracked object: once torch and transformers are imported, about a quarter of a second
    each time. Imported modules live as long as the test process, so whenever a test finds many new ones (torch,
    transformers, ... loaded by the tests before it), what exists is moved out of the collector's sight
    (gc.freeze, after a collection); what the tests create afterwards is collected as usual."""
    global _modules_when_frozen
    if len(sys.modules) > _modules_when_frozen + 500:
        import gc

        gc.collect()
        gc.freeze()
        _modules_when_frozen = len(sys.modules)
    yield


# The files that take longest, longest first (wall time of each in one serial run of the suite on the shared 2-core
# machine, 2026-12-07: their subprocesses, servers and fsyncs included). `make test` hands whole files to its two
# processes (--dist loadfile) in collection order (--no-loadscope-reorder: xdist would otherwise sort files by their
# number of tests, which puts these few-but-long ones last, and one of them alone then ends the run while the other
# process idles). Files not named follow, in their usual order.
LONGEST_FIRST = (
    "test_security.py", "test_config_is_data.py", "test_every_key_takes_effect.py", "test_console.py",
    "test_mlflow_flavors.py", "test_smoke_presets.py", "test_bad_settings.py", "test_sweeper_official.py",
    "test_config.py", "test_bad_inputs.py", "test_sweep.py", "test_sweep_shared.py", "test_docs_commands.py",
    "test_summarization.py", "test_settings_take_effect.py", "test_mlflow.py", "test_resume.py", "test_stop_paths.py",
    "test_config_signatures.py", "test_tracking_names.py", "test_regression_metrics.py", "test_notebook.py",
    "test_embedding.py", "test_study_tracking.py", "test_user_components.py", "test_data_files.py",
    "test_sweeper_seeding.py", "test_secrets_integrity.py", "test_classification.py", "test_augsbert.py",
    "test_sbert_nli.py", "test_forkserver.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's own order is kept


# ---- measuring the suite (off unless asked): NLPEXP_TEST_CPU_LOG=<file> gets one line per test file and test
# process: the file, its CPU seconds (this process, its waited children and the children forked for it) and wall
# seconds; NLPEXP_FORKSERVER_LOG=<file> (tests/forkserver.py) gets a line per process started (`spawn`) besides the
# fork server's forked/fallback lines.
_CPU_LOG = os.environ.get("NLPEXP_TEST_CPU_LOG")
_per_file: dict[str, list[float]] = {}

if os.environ.get("NLPEXP_FORKSERVER_LOG"):
    import subprocess

    _execute_child = subprocess.Popen._execute_child

    def _logged_execute_child(self, args, *rest, **kwargs):
        words = [os.fsdecode(arg) for arg in ([args] if isinstance(args, str | bytes | os.PathLike) else args)]
        command = " ".join([os.path.basename(words[0]), *words[1:3]])[:160].replace("\n", " ").replace("\t", " ")
        test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
        with open(os.environ["NLPEXP_FORKSERVER_LOG"], "a") as out:
            out.write(f"spawn\t\t{test}\t{command}\n")
        return _execute_child(self, args, *rest, **kwargs)

    subprocess.Popen._execute_child = _logged_execute_child


def _cpu_now() -> float:
    from tests import forkserver

    times = os.times()
    return times.user + times.system + times.children_user + times.children_system + forkserver.forked_cpu_s


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if not _CPU_LOG:
        yield
        return
    import time

    cpu, wall = _cpu_now(), time.monotonic()
    yield
    spent = _per_file.setdefault(item.path.name, [0.0, 0.0])
    spent[0] += _cpu_now() - cpu
    spent[1] += time.monotonic() - wall


def pytest_unconfigure(config):
    if _CPU_LOG and _per_file:
        with open(_CPU_LOG, "a") as out:
            out.writelines(f"{name}\t{cpu:.1f}\t{wall:.1f}\t{os.getpid()}\n" for name, (cpu, wall) in _per_file.items())
