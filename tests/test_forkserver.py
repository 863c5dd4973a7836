"""tests/forkserver.py: a command it forks is the process a fresh `python script.py` would be."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests import forkserver

PROBE = r"""
import json, os, signal, sys
if sys.argv[1:] == ["raise"]:
    raise KeyboardInterrupt
print(json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "env": dict(os.environ), "path": sys.path,
                  "session": os.getsid(0) == os.getpid(), "sigint": str(signal.getsignal(signal.SIGINT)),
                  "sigterm": str(signal.getsignal(signal.SIGTERM)), "sigpipe": str(signal.getsignal(signal.SIGPIPE)),
                  "stdout": [sys.stdout.encoding, sys.stdout.errors, sys.stdout.line_buffering],
                  "stderr": [sys.stderr.encoding, sys.stderr.errors, sys.stderr.line_buffering],
                  "main": sorted(k for k in vars(sys.modules["__main__"]) if k != "__cached__")}))
print("to stderr", file=sys.stderr)
sys.exit(int(os.environ.get("PROBE_EXIT", "0")))
"""


@pytest.fixture
def probe(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text(PROBE)
    return [sys.executable, str(path)]


@pytest.mark.parametrize("new_session", [False, True])
def test_a_forked_command_sees_what_a_fresh_process_sees(probe, tmp_path, new_session):
    (tmp_path / "lib").mkdir()
    env = {**os.environ, "PROBE_EXIT": "3", "NLPEXP_SOMETHING": "x", "HYDRA_FULL_ERROR": "1",
           "PYTHONPATH": os.pathsep.join(["lib", *filter(None, [os.environ.get("PYTHONPATH")])])}
    kwargs = dict(capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env, start_new_session=new_session)
    forked = forkserver.run([*probe, "a b", "c"], **kwargs)
    fresh = subprocess.run([*probe, "a b", "c"], **kwargs)
    with forkserver.popen(probe, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as process:
        assert isinstance(process, forkserver._Forked)
    assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)


def test_python_c_and_a_shell_s_python_fork_as_fresh_processes(probe, tmp_path):
    """`python -c CODE`, and `python script.py` in a shell script through the shims of `shim_env`."""
    log = tmp_path / "launches.log"
    env = {**os.environ, "PROBE_EXIT": "4", forkserver.LOG_VARIABLE: str(log),
           "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])}  # `python`: this one
    kwargs = dict(capture_output=True, text=True, timeout=120, cwd=tmp_path)
    forked = forkserver.run([sys.executable, "-c", PROBE, "x"], env=env, **kwargs)
    fresh = subprocess.run([sys.executable, "-c", PROBE, "x"], env=env, **kwargs)
    with forkserver.popen([sys.executable, "-c", PROBE], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL) as process:
        assert isinstance(process, forkserver._Forked)
    assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)

    shimmed = forkserver.shim_env(env)
    # the third after what a venv's activate does: the interpreter's folder first on PATH again (before the shims:
    # a bash function reaches them)
    again = f"PATH={os.path.dirname(sys.executable)}:$PATH"
    script = f"python {probe[1]} y | cat\npython {probe[1]} z\n{again}\npython {probe[1]} w\n"
    through_shim = subprocess.run(["bash", "-c", script], env=shimmed, **kwargs)
    plain = subprocess.run(["bash", "-c", script.replace("python ", f"{sys.executable} ")], env=shimmed, **kwargs)
    assert through_shim.returncode == plain.returncode == 4 and through_shim.stderr == plain.stderr

    def seen(stdout: str) -> list[dict]:
        printed = [json.loads(line) for line in stdout.splitlines()]
        for each in printed:
            each["env"].pop("_", None)  # bash's: the path of the program it ran (the shim, the interpreter)
            each["env"].pop("SHLVL", None)  # bash's: one more where its last command is a function (not exec'd)
        return printed

    assert seen(through_shim.stdout) == seen(plain.stdout) and len(seen(plain.stdout)) == 3
    launches = [line.split("\t")[:2] for line in log.read_text().splitlines() if not line.startswith("ended")]
    assert launches == [["forked", "shim"]] * 3


def test_signals_and_an_uncaught_interrupt_end_it_as_they_end_a_fresh_process(probe, tmp_path):
    sleeper = tmp_path / "sleep.py"
    sleeper.write_text("import time\nprint('up', flush=True)\ntime.sleep(60)\n")
    process = forkserver.popen([sys.executable, str(sleeper)], stdout=subprocess.PIPE, text=True)
    assert isinstance(process, forkserver._Forked) and process.stdout.readline() == "up\n"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == -signal.SIGTERM
    interrupted = forkserver.run([*probe, "raise"], capture_output=True, text=True, timeout=60)
    fresh = subprocess.run([*probe, "raise"], capture_output=True, text=True, timeout=60)
    assert interrupted.returncode == fresh.returncode == -signal.SIGINT
    assert "KeyboardInterrupt" in interrupted.stderr


def test_an_import_time_setting_gets_its_own_server_and_preexec_fn_a_real_subprocess(probe):
    """A server imports with one set of CONTROLLED_ENV values: other values are another server's."""
    env = {**os.environ, "HF_HOME": "/elsewhere"}
    key = forkserver.key_of(env)
    assert ("HF_HOME", "/elsewhere") in key and key != forkserver.key_of(os.environ)
    forked = forkserver.run([*probe], env=env, capture_output=True, text=True, timeout=120)
    assert '"HF_HOME": "/elsewhere"' in forked.stdout and key in forkserver._servers
    assert next(reversed(forkserver._servers)) == key  # the most recently used
    with forkserver.popen(probe, preexec_fn=os.getpid, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as process:
        assert not isinstance(process, forkserver._Forked)


def test_what_a_fresh_process_would_import_or_set_differently_gets_a_real_subprocess(probe, tmp_path):
    """A PYTHONPATH folder shadowing an imported module, a config dir that may set an import-time variable or add a
    search path (env_set, a package or group of it, a defaults list choosing one, searchpath), an env_set of an
    import-time variable on the command line: a real subprocess. A config dir whose env_set names other variables (or
    none: a run's saved hydra.yaml) or whose text only quotes an override, and a variable read after import, fork."""
    (tmp_path / "shadow" / "torch").mkdir(parents=True)
    (tmp_path / "shadow" / "torch" / "__init__.py").write_text("")
    files = {"setting": "hydra:\n  job:\n    env_set:\n      HF_HOME: b\n",
             "packaged": "# @package hydra.job.env_set\nA: b\n", "searching": "hydra:\n  searchpath: [file:///x]\n",
             "choosing": "defaults:\n  - /hydra/job/env_set: x\n", "grouped/hydra/job/env_set/x": "HF_HOME: b\n",
             "plain": "seed: 1\n", "other": "hydra:\n  job:\n    env_set:\n      A: b\n  searchpath: []\n",
             "empty": "hydra:\n  job:\n    env_set: {}\n", "listed": "- +hydra.job.env_set.HF_HOME=/x\n"}
    for name, text in files.items():  # (a folder's experiment/e.yaml, or the file named)
        path = tmp_path / (name + ".yaml" if "/" in name else f"{name}/experiment/e.yaml")
        path.parent.mkdir(parents=True)
        path.write_text(text)
    cases = [([*probe], {"PYTHONPATH": str(tmp_path / "shadow")}, False),
             *[([*probe, "-cd", str(tmp_path / folder), "experiment=e"], {}, False)
               for folder in ("setting", "packaged", "searching", "choosing", "grouped")],
             ([*probe, "+hydra.job.env_set.HF_HOME=/x"], {}, False),
             ([*probe, "+hydra/job/env_set=x"], {}, False),
             ([*probe, "+hydra.job.env_set.NLPEXP_NOTE=x"], {}, True),
             *[([*probe, f"--config-dir={tmp_path / folder}", "experiment=e"], {}, True)
               for folder in ("plain", "other", "empty", "listed")],
             ([*probe], {"HYDRA_FULL_ERROR": "1", "HF_TOKEN": "hf_x"}, True)]
    for args, extra, forks in cases:
        env = {**os.environ, **extra}
        with forkserver.popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as process:
            assert isinstance(process, forkserver._Forked) == forks, args


def test_a_variable_read_after_import_goes_with_the_command_unless_the_imports_read_it():
    """SET_AT_FORK: no server of its own (the server's imports did not look it up), and a server whose imports did
    look it up forks only the commands that have the value it had."""
    server = forkserver._server(os.environ)
    assert not set(server["read"]) & set(forkserver.SET_AT_FORK), "a library now reads it at import"
    assert forkserver.key_of({**os.environ, "HYDRA_FULL_ERROR": "1"}) == forkserver.key_of(os.environ)
    reading = {"read": ["HF_TOKEN"], "seen": {"HF_TOKEN": "a"}, "imported": {}}
    assert forkserver.server_problem({"HF_TOKEN": "b"}, None, reading) == "HF_TOKEN is read at import"
    assert forkserver.server_problem({"HF_TOKEN": "a"}, None, reading) == ""
