"""`python run.py ...` (or `python -m nlpexp...`) for the tests without paying its imports each time.

85-90 % of a small run.py process is importing torch, transformers' Trainer and sentence-transformers. Each test
process starts one server (`python tests/forkserver.py`) that imports those once, nlpexp not (it reads the
environment at import), and forks a child per command. The child becomes the command as a fresh interpreter
would: the requested argv, cwd, environment (os.environ replaced), stdin/stdout/stderr (stdio objects rebuilt as
Python's start-up builds them), its own session if asked, signal dispositions as exec leaves them (the caller's
ignored ones kept ignored, the rest default, then Python's own SIGINT/SIGPIPE/SIGXFSZ set-up) and the caller's
signal mask. It has a real pid (signals reach it, it may be killed) and the server reports its exit status.

A command gets a real subprocess instead where the pre-imported libraries could have read something else at
import: any difference in the variables they read (CONTROLLED_ENV), an `env_set` or another config dir on the
command line, or a subprocess argument the server does not carry over (shell, preexec_fn, pass_fds, user...).
Tests of a cold start (import-time behaviour, start-up speed) use subprocess itself.
"""

from __future__ import annotations

import errno
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

PRELOADED = ("torch", "transformers", "transformers.trainer", "sentence_transformers", "hydra", "omegaconf",
             "datasets", "numpy")
# what the pre-imported libraries (and Python's start-up) may read from the environment at import
CONTROLLED_ENV = ("HF_", "TRANSFORMERS", "TORCH", "PYTORCH", "TOKENIZERS", "OMP_", "MKL", "KMP_", "OPENBLAS",
                  "CUDA", "NVIDIA", "SENTENCE_TRANSFORMERS", "DATASETS", "HYDRA", "NUMPY", "PYTHON", "LANG", "LC_",
                  "XDG_", "HOME", "TMPDIR", "TEMP", "TMP", "PATH", "LD_", "TQDM", "WANDB")
# transformers' W&B integration prints a line when imported with WANDB_MODE=offline, which a fresh process prints
# only if it gets that far: with it set, the server leaves out what imports that integration
PRINT_ON_IMPORT = {"WANDB_MODE": ("offline", ("transformers.trainer", "sentence_transformers"))}
_HANDLED_AT_FORK = {"PYTHONUNBUFFERED"}  # the child's stdio is built for it
_NOT_CARRIED = ("preexec_fn", "pass_fds", "user", "group", "extra_groups", "umask", "executable", "process_group")
_CONFIG_ARGS = ("env_set", "-cd", "--config-dir", "-cp", "--config-path", "-cn", "--config-name", "searchpath")
_STATUS = struct.Struct("qqd")  # pid (or 0 then the exit status), wait status, CPU seconds of the child
_PROJECT_ROOT = Path(__file__).resolve().parent.parent

forked_cpu_s = 0.0  # user+sys seconds of the forked children that ended (RUSAGE_CHILDREN does not see them)
MAX_SERVERS = 3  # one per set of CONTROLLED_ENV values met (a test's own TQDM_DISABLE=1, ...), the newest ones
_servers: dict[frozenset, dict] = {}


def run(args, *, input=None, capture_output=False, timeout=None, check=False, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run, through the server where it can be."""
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    if capture_output:
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    with popen(args, **kwargs) as process:
        try:
            stdout, stderr = process.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            process.kill()
            exc.stdout, exc.stderr = process.communicate()
            raise
        except BaseException:
            process.kill()
            raise
    done = subprocess.CompletedProcess(process.args, process.poll(), stdout, stderr)
    if check:
        done.check_returncode()
    return done


def popen(args, *, reset_sigint: bool = False, **kwargs) -> subprocess.Popen:
    """subprocess.Popen, through the server where it can be. reset_sigint: the child takes SIGINT as a terminal
    delivers it even where this process ignores it (a suite started in the background passes SIGINT on ignored)."""
    if _forkable(args, kwargs):
        server = _server(os.environ if kwargs.get("env") is None else kwargs["env"])
        if server is not None:
            return _Forked(args, server=server, reset_sigint=reset_sigint, **kwargs)
    if reset_sigint:
        kwargs["preexec_fn"] = _default_sigint
    return subprocess.Popen(args, **kwargs)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _forkable(args, kwargs) -> bool:
    if isinstance(args, str | bytes) or kwargs.get("shell") or any(kwargs.get(name) for name in _NOT_CARRIED):
        return False
    args = [str(arg) for arg in args]
    if len(args) < 2 or args[0] != sys.executable or kwargs.get("restore_signals") is False:
        return False
    if not (args[1].endswith(".py") or (args[1] == "-m" and len(args) > 2)):
        return False
    return not any(word in arg for arg in args for word in _CONFIG_ARGS)


def _server(env) -> str | None:
    """The socket of the server whose imports saw `env`'s CONTROLLED_ENV values (started at the first request);
    None where there is none and no more may start, or it could not start."""
    key = frozenset((k, v) for k, v in env.items() if k.startswith(CONTROLLED_ENV) and k not in _HANDLED_AT_FORK)
    if key not in _servers:
        if len(_servers) == MAX_SERVERS:  # the least recently used one goes (test files tend to keep to one)
            _stop(_servers.pop(next(iter(_servers))))
        folder = tempfile.mkdtemp(prefix="nlpexp-forkserver-")
        path = os.path.join(folder, "socket")
        with open(os.path.join(folder, "server.log"), "wb") as log:
            process = subprocess.Popen([sys.executable, __file__, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=log, cwd=_PROJECT_ROOT, env={**os.environ, **dict(key)})
        ready = process.stdout.readline().strip() == b"ready"
        _servers[key] = {"process": process, "path": path if ready else None, "folder": folder}
        if len(_servers) == 1:
            import atexit

            atexit.register(lambda: [_stop(server) for server in _servers.values()])
    _servers[key] = _servers.pop(key)  # the most recently used last
    return _servers[key]["path"]


def _stop(server: dict) -> None:
    """A server ends at the end of its input (its children go on); waiting for it counts its CPU time in this
    process's children."""
    server["process"].stdin.close()
    server["process"].wait(timeout=60)
    shutil.rmtree(server["folder"], ignore_errors=True)


class _Forked(subprocess.Popen):
    """A Popen whose child the server forks (subprocess's pipes, communicate, timeouts and signals as usual)."""

    def __init__(self, args, *, server: str, reset_sigint: bool, **kwargs):
        self._server, self._reset_sigint = server, reset_sigint
        super().__init__(args, **kwargs)

    def _execute_child(self, args, executable, preexec_fn, close_fds, pass_fds, cwd, env, startupinfo, creationflags,
                       shell, p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite, restore_signals, gid, gids,
                       uid, umask, start_new_session, process_group):
        args = [os.fsdecode(arg) for arg in args]
        ignored = [int(s) for s in signal.valid_signals() if s not in (signal.SIGPIPE, signal.SIGXFSZ)
                   and _ignored(s) and not (self._reset_sigint and s == signal.SIGINT)]
        request = {"args": args[1:], "cwd": os.fsdecode(cwd) if cwd is not None else os.getcwd(),
                   "env": {os.fsdecode(k): os.fsdecode(v) for k, v in (os.environ if env is None else env).items()},
                   "new_session": bool(start_new_session), "ignored": ignored,
                   "mask": [int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])]}
        fds = [p2cread if p2cread != -1 else 0, c2pwrite if c2pwrite != -1 else 1, errwrite if errwrite != -1 else 2]
        self._connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._connection.connect(self._server)
        try:
            socket.send_fds(self._connection, [json.dumps(request).encode()], fds)
            self.pid, _, _ = _STATUS.unpack(self._connection.recv(_STATUS.size))
            self._child_created = True
        finally:
            self._close_pipe_fds(p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite)

    def _try_wait(self, wait_flags):
        global forked_cpu_s
        if wait_flags & os.WNOHANG and not select.select([self._connection], [], [], 0)[0]:
            return 0, 0
        _, status, cpu = _STATUS.unpack(self._connection.recv(_STATUS.size))
        forked_cpu_s += cpu
        self._connection.close()
        return self.pid, status

    def _internal_poll(self, _deadstate=None, **_):
        if self.returncode is None and self._waitpid_lock.acquire(False):
            try:
                if self.returncode is None:
                    pid, status = self._try_wait(os.WNOHANG)
                    if pid == self.pid:
                        self._handle_exitstatus(status)
            finally:
                self._waitpid_lock.release()
        return self.returncode


def _ignored(signum) -> bool:
    try:
        return signal.getsignal(signum) == signal.SIG_IGN
    except ValueError:
        return False


# ------------------------------------------------------------------------------------------- the server's side
class _CurrentStream:
    """What a library imported in the server keeps as its sys.stdout/sys.stderr (a logging handler's stream):
    whichever the child's sys.stdout/sys.stderr is when it writes, as if the library had been imported there."""

    def __init__(self, name: str):
        self._name = name

    def _target(self):
        stream = getattr(sys, self._name)
        return getattr(sys, f"__{self._name}__") if stream is self else stream

    def write(self, text):
        return self._target().write(text)

    def __getattr__(self, name):
        return getattr(self._target(), name)


def _preload() -> str:
    """Import PRELOADED with sys.stdout/sys.stderr standing for the child's; '' or why the server is unusable."""
    sys.path[0] = str(_PROJECT_ROOT)  # where `python run.py` starts its sys.path (this file's folder is not)
    sys.stdout, sys.stderr = _CurrentStream("stdout"), _CurrentStream("stderr")
    before = os.fstat(2).st_size
    try:
        skipped = [names for variable, (value, names) in PRINT_ON_IMPORT.items() if os.environ.get(variable) == value]
        for name in PRELOADED:
            if not any(name in names for names in skipped):
                __import__(name)
    finally:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    import threading

    if threading.active_count() != 1:
        return f"{threading.active_count()} threads after the imports: forking is unsafe"
    if os.fstat(2).st_size != before:
        return "the imports printed something (a fresh process would print it too)"
    import gc

    gc.collect()
    gc.freeze()  # the children's collections need not walk (and copy, page by page) what the imports made
    return ""


def _serve(path: str) -> tuple[dict, list[int]]:
    """Fork a child per request until this server's input ends; returns (request, fds) in each child only."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(64)
    wakeup_read, wakeup_write = os.pipe()
    os.set_blocking(wakeup_write, False)
    signal.set_wakeup_fd(wakeup_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    waiting: dict[int, socket.socket] = {}
    fresh: list[socket.socket] = []
    while True:
        ready = select.select([listener, sys.stdin, wakeup_read, *fresh], [], [])[0]
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 1 << 16):
            sys.exit(0)
        if listener in ready:
            fresh.append(listener.accept()[0])
        if wakeup_read in ready:
            os.read(wakeup_read, 1 << 16)
        for connection in [c for c in fresh if c in ready]:
            fresh.remove(connection)
            message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                for fd in (listener, connection, wakeup_read, wakeup_write, *fresh, *waiting.values()):
                    os.close(fd) if isinstance(fd, int) else fd.close()
                return json.loads(message), fds
            for fd in fds:
                os.close(fd)
            connection.send(_STATUS.pack(pid, 0, 0.0))
            waiting[pid] = connection
        while waiting:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            connection = waiting.pop(pid, None)
            if connection is not None:
                try:
                    connection.send(_STATUS.pack(0, status, usage.ru_utime + usage.ru_stime))
                except OSError as exc:  # the caller has gone
                    if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
                        raise
                connection.close()


def _become(request: dict, fds: list[int]) -> None:
    """Turn this forked child into the process `python <args>` would have started."""
    if request["new_session"]:
        os.setsid()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in set(fds) - {0, 1, 2}:
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for signum in signal.valid_signals():
        if signum not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(signum, signal.SIG_IGN if signum in request["ignored"] else signal.SIG_DFL)
    if signal.SIGINT not in request["ignored"]:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, request["mask"])
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        old = getattr(sys, name)
        buffer = open(fd, "wb" if fd else "rb", buffering=0 if unbuffered and fd else -1, closefd=False)
        new = __import__("io").TextIOWrapper(buffer, encoding=old.encoding, errors=old.errors, newline="\n",
                                             line_buffering=fd > 0 and not unbuffered and (fd == 2 or os.isatty(fd)),
                                             write_through=unbuffered and fd > 0)
        setattr(sys, name, new)
        setattr(sys, f"__{name}__", new)
    if "numpy" in sys.modules:  # its global generator was seeded from the OS at import, once for every child
        sys.modules["numpy"].random.seed()


def _main(args: list[str]) -> None:
    import runpy

    if args[0] == "-m":
        sys.argv = args[1:]
        sys.path[0] = os.getcwd()
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = args
        sys.path[0] = os.path.dirname(os.path.realpath(args[0]))
        runpy.run_path(args[0], run_name="__main__")


def _exit_status() -> int:
    """Python's own end of a program (the uncaught exception's report, a SystemExit's code), then its exit steps
    that have effects: the non-daemon threads joined, the atexit functions, stdio flushed. Not the tear-down of
    every module, which in a child of the server frees the whole pre-imported heap: 0.4 s of CPU each time."""
    code = 0
    try:
        _main(request["args"])
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = -signal.SIGINT if isinstance(sys.exc_info()[1], KeyboardInterrupt) else 1
    import atexit
    import threading

    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            code = code or 120  # what Python exits with when it cannot flush stdout
    return code


if __name__ == "__main__":
    problem = _preload()
    if problem:
        sys.stdout.write(f"unusable: {problem}\n")
        sys.exit(0)
    request, fds = _serve(sys.argv[1])
    _become(request, fds)
    del problem, fds
    status = _exit_status()
    if status == -signal.SIGINT:  # an uncaught KeyboardInterrupt ends Python by SIGINT, as its parent expects
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(status & 0xFF)
