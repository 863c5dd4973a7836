"""Real services that tests start for themselves: a throwaway PostgreSQL cluster, an MLflow tracking server (the
`tracking_uri` fixture, one for all test processes of an xdist run: this module is a pytest plugin,
tests/conftest.py), `mlflow models serve`.

Each listens on loopback only, on a free port, with its files in a temp dir removed afterwards. Where the
server cannot be started here (no binaries), the test is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from glob import glob
from pathlib import Path

import pytest

# The tests' PATH leads with this interpreter's folder, as an activated venv's does (`make test` runs .venv/bin/python
# without activating it): the docs' `python`/`nlpexp` commands and `mlflow models serve`'s uvicorn are the venv's,
# and the tests that put that folder first for those find it there already, so their commands fork from the same
# fork server as every other test's (PATH is part of a server's key: another PATH, another server of 8-10 CPU-s).
INTERPRETER_BIN = str(Path(sys.executable).parent)
if os.environ.get("PATH", "").split(os.pathsep)[0] != INTERPRETER_BIN:
    os.environ["PATH"] = os.pathsep.join([INTERPRETER_BIN, *filter(None, [os.environ.get("PATH")])])


def venv_first(path: str) -> str:
    """`path` with this interpreter's folder first (unchanged where it leads already)."""
    return path if path.split(os.pathsep)[0] == INTERPRETER_BIN else os.pathsep.join([INTERPRETER_BIN, path])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def postgres_bin_dir() -> Path | None:
    """The dir of initdb and pg_ctl: on PATH, else the newest Debian/Ubuntu server package."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    found = sorted(glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _as_server_user() -> list[str]:
    """initdb and pg_ctl refuse root: as root they run as the `postgres` user (skip if there is none)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no `postgres` user for initdb/pg_ctl (they refuse root)")
    return ["runuser", "-u", "postgres", "--"]


@dataclass(frozen=True)
class Postgres:
    url: str  # SQLAlchemy URL (psycopg 3 driver) without the password: that one travels as PGPASSWORD
    password: str

    @property
    def env(self) -> dict[str, str]:
        return {"PGPASSWORD": self.password}


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    """A PostgreSQL cluster on 127.0.0.1:<free port>, user nlpexp with a random password."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin")
    as_user = _as_server_user()
    # Not pytest's tmp_path: its parents are private to root, and the server user must reach the data dir.
    root = Path(tempfile.mkdtemp(prefix="nlpexp-pg-"))
    password = secrets.token_hex(12)
    port = free_port()
    (root / "pw").write_text(password)
    if as_user:
        shutil.chown(root, "postgres")
        shutil.chown(root / "pw", "postgres")
    data, log = root / "data", root / "server.log"
    try:
        _check([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "nlpexp", "--auth=scram-sha-256",
                f"--pwfile={root / 'pw'}", "--no-sync", "-E", "UTF8"])
        # loopback only, the socket in the data dir (not /var/run/postgresql, which may be missing or shared)
        options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} -c fsync=off"
        _check([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60",
                "start"])
        yield Postgres(f"postgresql+psycopg://nlpexp@127.0.0.1:{port}/postgres", password)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def _check(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:6])} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


@contextlib.contextmanager
def mlflow_server(root: Path) -> Iterator[str]:
    """`mlflow server` on 127.0.0.1:<free port>, its metadata in sqlite and its artifacts under `root`;
    yields its tracking URI."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    log = root / "server.log"
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
               "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
               "--artifacts-destination", str(root / "artifacts"), "--workers", "1"]
    with open(log, "w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                  # no background job runner (a dozen processes): the tests need none
                                  env={**os.environ, "MLFLOW_TRACKING_URI": "",
                                       "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    uri = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(f"{uri}/health", server, log)
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):  # a worker slower to go than its parent
            os.killpg(server.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def tracking_uri(request, tmp_path_factory) -> Iterator[str]:
    """One real `mlflow server` for every test file that needs one: a start costs about 12 CPU-seconds (its CLI and
    its worker each import MLflow, and a new store runs MLflow's migrations). In an xdist run the controller starts
    it for all test processes, at the first one's request (_SharedMlflow); otherwise each process starts its own.
    The files keep apart by name: each logs to experiments and registers models of its own names."""
    folder = os.environ.get(SHARED_VARIABLE)
    uri = _ask_shared(Path(folder)) if folder else None
    if uri:
        yield uri
        return
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as uri:
        yield uri


SHARED_VARIABLE = "NLPEXP_MLFLOW_SHARED"  # an xdist run's folder where the test processes ask for the server
_SHARED = pytest.StashKey["_SharedMlflow"]()


def pytest_configure(config: pytest.Config) -> None:
    """The process that runs the session (the xdist controller, else the one test process) serves the server."""
    if not hasattr(config, "workerinput") and not os.environ.get(SHARED_VARIABLE):
        folder = tempfile.mkdtemp(prefix="nlpexp-mlflow-shared-")
        os.environ[SHARED_VARIABLE] = folder  # before xdist starts the test processes (they inherit it)
        config.stash[_SHARED] = _SharedMlflow(Path(folder))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Where a collected test uses the server, it starts now, in the background, while the tests before it run:
    no test process then waits the ~10 s of its start (its CLI's and its worker's imports, the store's migrations)."""
    folder = os.environ.get(SHARED_VARIABLE)
    using = any("tracking_uri" in getattr(item, "fixturenames", ()) for item in session.items)
    if folder and using and not session.config.option.collectonly:
        _request(Path(folder))


def pytest_unconfigure(config: pytest.Config) -> None:
    shared = config.stash.get(_SHARED, None)
    if shared is not None:
        shared.close()
        os.environ.pop(SHARED_VARIABLE, None)


class _SharedMlflow:
    """The session's side (the xdist controller, or the one test process): a thread that starts the server once a
    test process asks (a `want` file in the folder) and writes its URI (or why it could not) into `answer.json`;
    the server stops at close(), once the test processes have ended."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._servers = contextlib.ExitStack()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closing.wait(0.05):
            if (self.folder / "want").exists():
                try:
                    answer = {"uri": self._servers.enter_context(mlflow_server(self.folder / "server"))}
                except BaseException as exc:  # (a skip too) each test process then starts its own, as without xdist
                    answer = {"uri": None, "problem": repr(exc)}
                part = self.folder / ".answer.json"
                part.write_text(json.dumps(answer))
                os.replace(part, self.folder / "answer.json")  # whole or absent: the test processes poll for it
                return

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=_SHARED_WAIT_S)
        self._servers.close()
        shutil.rmtree(self.folder, ignore_errors=True)


_SHARED_WAIT_S = 600  # for the server to start (two test processes and MLflow's imports on a busy 2-core machine)


def _ask_shared(folder: Path) -> str | None:
    """A test process's side: the URI of the controller's server (None where it could not start one)."""
    answer = folder / "answer.json"
    if not answer.exists():
        _request(folder)
        deadline = time.monotonic() + _SHARED_WAIT_S
        while not answer.exists():
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)
    return json.loads(answer.read_text())["uri"]


def _request(folder: Path) -> None:
    with contextlib.suppress(FileExistsError):  # asked already (at collection, or by the other test process)
        os.close(os.open(folder / "want", os.O_CREAT | os.O_EXCL | os.O_WRONLY))


@contextlib.contextmanager
def mlflow_serving(model_uri: str, tracking_uri: str, log: Path) -> Iterator[Callable[[list], list]]:
    """`mlflow models serve` of `model_uri` on 127.0.0.1:<free port> (nlpexp's environment, --env-manager
    local); yields a function that POSTs inputs to /invocations and returns the predictions.

    Both its processes fork from a pre-imported interpreter as fresh ones would (tests/forkserver.py): the CLI, and
    the scoring server it starts, the venv's `uvicorn` run by name through a shell (a shim of it first on PATH).
    Measured on the shared 2-core machine: the CLI 5.6 CPU-s cold, 3.7 forked; the scoring server's imports
    (torch, transformers, sentence-transformers for the model) about 10 CPU-s cold, under 0.1 forked."""
    from tests import forkserver

    port = free_port()
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "-h", "127.0.0.1", "-p",
               str(port), "--env-manager", "local"]
    env = _with_uvicorn_shim(forkserver.shim_env({**os.environ, "MLFLOW_TRACKING_URI": tracking_uri,
                                                  "PATH": venv_first(os.environ["PATH"])}))
    with open(log, "w") as out:
        serving = forkserver.popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)

    def predict(inputs: list) -> list:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", method="POST",
                                         data=json.dumps({"inputs": inputs}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())["predictions"]

    try:
        _wait_until_up(f"http://127.0.0.1:{port}/ping", serving, log)
        yield predict
    finally:
        with contextlib.suppress(ProcessLookupError):  # one that failed to start is gone already
            os.killpg(serving.pid, signal.SIGTERM)
        serving.wait(timeout=30)


def _with_uvicorn_shim(env: dict) -> dict:
    """`env` (from forkserver.shim_env) with a `uvicorn` beside its `python` shim: the same program for another
    name (tests/forkshim.py finds the venv's `uvicorn` script further on PATH, checks its #! line names this
    interpreter and forks it, else execs it). Where the shims' format is not the expected one, none is added: the
    scoring server then starts as a fresh process."""
    if "BASH_FUNC_python%%" not in env:  # no fork server here: no shims
        return env
    shims = Path(env["PATH"].split(os.pathsep)[0])
    python = shims / "python"
    if python.is_file() and not (shims / "uvicorn").exists():
        text = python.read_text()
        if text.count("'name': 'python'") == 1:
            part = shims / ".uvicorn"
            part.write_text(text.replace("'name': 'python'", "'name': 'uvicorn'"))
            part.chmod(0o755)
            os.replace(part, shims / "uvicorn")
    return env


def _wait_until_up(url: str, server: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            if server.poll() is not None:
                raise AssertionError(f"the server exited:\n{log.read_text()[-3000:]}") from None
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} not up after {timeout}s:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.1)  # a poll costs a connection refused: a few tenths of a second sooner up


def run_logged_to_mlflow(mlflow_uri: str, root, data_root, overrides, env: dict[str, str] | None = None,
                         experiment: str | None = None):
    """One in-process run logged to the MLflow server at `mlflow_uri` (outputs under `root`): (metrics, client,
    the server's one run of `experiment`, else of the default experiment `nlpexp`)."""
    import pytest
    from mlflow import MlflowClient

    from nlpexp.config import compose
    from nlpexp.pipeline import run

    with pytest.MonkeyPatch.context() as mp:
        environment = {"NLPEXP_DATA_DIR": str(data_root), "MLFLOW_TRACKING_URI": mlflow_uri, **(env or {})}
        for name, value in environment.items():
            mp.setenv(name, value)
        mp.chdir(root)
        named = [f"logger.mlflow.experiment={experiment}"] if experiment else []
        metrics = run(compose([f"paths.output_dir={root / 'run'}", f"paths.ledger_file={root / 'ledger.jsonl'}",
                               *overrides, *named]))
    client = MlflowClient(mlflow_uri)
    (found,) = client.search_runs([client.get_experiment_by_name(experiment or "nlpexp").experiment_id])
    return metrics, client, found
