"""The fork servers (tests/forkserver.py) of a pytest-xdist run, shared by its test processes.

Each test process would start its own server for the same environment: with `-n 2`, two servers of 10-12 CPU-s each
for the environment every test process forks run.py in. Here the controller process (it runs no test) starts them,
one per environment, when a test process first asks for it, and stops them once the test processes have ended. A
test process asks by writing a request file into the run's folder (NLPEXP_FORKSERVER_SHARED, which the test
processes inherit) and reads the answer beside it; the children of a server are the test processes' as before (each
forks through the server's socket). Without xdist, or in a test process started otherwise, each process starts its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests import forkserver

VARIABLE = "NLPEXP_FORKSERVER_SHARED"
_UNUSABLE = {"process": None, "path": None, "folder": None, "imported": {}, "read": [], "seen": {}, "cpu_s": 0.0,
             "children_cpu_s": 0.0}
_WAIT_S = 600  # for a server to start (two test processes and the imports on a busy 2-core machine)


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # a test process of xdist's
        if os.environ.get(VARIABLE):
            forkserver.shared_start = _ask
            forkserver.shared_added = _added
    elif getattr(config.option, "dist", "no") != "no" and not os.environ.get(VARIABLE):
        folder = tempfile.mkdtemp(prefix="nlpexp-forkservers-")
        os.environ[VARIABLE] = folder  # before xdist starts the test processes (at the session's start)
        config.stash[_BROKER] = _Broker(Path(folder))


def pytest_unconfigure(config: pytest.Config) -> None:
    broker = config.stash.get(_BROKER, None)
    if broker is not None:
        broker.close()
        os.environ.pop(VARIABLE, None)


class _Broker:
    """The controller's side: a thread that starts a server per new request, until close()."""

    def __init__(self, folder: Path):
        self.folder, self.servers = folder, {}
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closing.wait(0.05):
            for request in sorted(self.folder.glob("want-*.json")):
                name = request.stem.removeprefix("want-")
                asked = json.loads(request.read_text())
                request.unlink()
                if name in self.servers:  # asked twice at once
                    continue
                try:
                    key = frozenset(tuple(item) for item in asked["key"])
                    server = self.servers[name] = forkserver.start(key, asked["seen"])
                    answer = {k: v for k, v in server.items() if k not in ("process", "key")}
                except Exception as exc:  # the test process falls back to a real process for each command
                    answer = {**_UNUSABLE, "problem": f"the controller could not start it: {exc!r}"}
                _write(self.folder / f"{name}.json", {**answer, "asked_by": asked["pid"]})

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=_WAIT_S)
        for server in self.servers.values():
            forkserver.stop(server)
        shutil.rmtree(self.folder, ignore_errors=True)


def _ask(key: frozenset, seen: dict) -> dict:
    """A test process's side: the server for `key`, started by the controller (`joined` where it was there already
    or another test process asked for it first: the CPU time of its start is that one's)."""
    folder = Path(os.environ[VARIABLE])
    name = hashlib.sha1(json.dumps(sorted(key)).encode()).hexdigest()[:20]
    answer = folder / f"{name}.json"
    asked = not answer.exists()
    if asked:
        _write(folder / f"want-{name}.json", {"key": sorted(key), "seen": seen, "pid": os.getpid()})
        deadline = time.monotonic() + _WAIT_S
        while not answer.exists():
            if time.monotonic() > deadline:
                return {**_UNUSABLE, "problem": "the shared server did not start", "key": key, "seen": seen}
            time.sleep(0.05)
    server = json.loads(answer.read_text())
    asked_by = server.pop("asked_by")
    return {**server, "process": None, "key": key, "joined": not asked or asked_by != os.getpid()}


def _added() -> dict:
    """The variables the imports of the servers started so far added to their environments (each answer says)."""
    added = {}
    for answer in Path(os.environ[VARIABLE]).glob("*.json"):
        if not answer.name.startswith("want-"):
            added.update(json.loads(answer.read_text()).get("added", {}))
    return added


_BROKER = pytest.StashKey["_Broker"]()


def _write(path: Path, content: dict) -> None:
    """Whole or absent: the reader polls for the file."""
    part = path.with_name(f".{path.name}.{os.getpid()}")
    part.write_text(json.dumps(content))
    os.replace(part, path)


