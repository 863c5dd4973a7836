"""A shell script's `python` / `nlpexp` through the fork server (tests/forkserver.py `shim_env`).

`forkserver.shim_env(env)` writes, for one server, a `python` and an `nlpexp` into a folder it puts first on PATH.
Each is a small Python program (`python -IS`, a few ms) that finds the real program further on PATH, and when the
command is forkable (that interpreter, the server's CONTROLLED_ENV values, forkserver.unforkable says nothing)
hands it to the server with its own stdin/stdout/stderr, passes on the signals it gets and ends as the child ended
(its exit status, or the same signal); otherwise it execs the real program, which then runs as it always does.
"""

from __future__ import annotations

import os
import signal
import sys

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def main(config: dict) -> None:
    from tests import forkserver

    sys.path.append(config["yaml"])  # PyYAML, for a command's config dir (started without site-packages)
    folders = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != config["shims"]]
    real = next((os.path.join(p, config["name"]) for p in folders
                 if os.access(os.path.join(p, config["name"]), os.X_OK)), None)
    if real is None:
        print(f"{config['name']}: command not found", file=sys.stderr)
        os._exit(127)
    command = [config["python"], *sys.argv[1:]] if real == config["python"] else [config["python"], real, *sys.argv[1:]]
    why = _why_not(config, real, command)
    if not why:
        server = {"path": config["socket"], "imported": config["imported"], "read": config["read"],
                  "seen": config["seen"]}
        why = forkserver.server_problem(os.environ, os.getcwd(), server)
    forkserver.log("fallback" if why else "forked", f"shim: {why}" if why else "shim", command)
    if why:
        os.execv(real, [real, *sys.argv[1:]])
    try:
        process = forkserver._Forked(command, server=config["socket"], reset_sigint=False)
    except OSError:  # the server has gone (its test process ended)
        os.execv(real, [real, *sys.argv[1:]])
    for signum in FORWARDED:
        if signal.getsignal(signum) != signal.SIG_IGN:
            signal.signal(signum, lambda received, _: process.send_signal(received))
    code = process.wait()
    sys.stdout.flush()
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code & 0xFF)


def _why_not(config: dict, real: str, command: list[str]) -> str:
    from tests import forkserver

    if real != config["python"]:
        with open(real, "rb") as script:
            if script.readline().rstrip(b"\n") != f"#!{config['python']}".encode():
                return f"{real} is not a script of {config['python']}"
    key = frozenset(tuple(item) for item in config["key"])
    if forkserver.key_of(os.environ, config["keyed"], config["added"]) != key:
        return "another environment than the server's"
    return forkserver.unforkable(command, {}, os.environ)
