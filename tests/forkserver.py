"""`python run.py ...` (or `python -m nlpexp...`, `python -c ...`) for the tests without paying its imports each time.

85-90 % of a small run.py process is importing torch, transformers' Trainer and sentence-transformers. Each test
process starts one server (`python tests/forkserver.py`) that imports those once, nlpexp not (it reads the
environment at import), and forks a child per command (in an xdist run the controller starts the servers for all
test processes: tests/forkshare.py). The child becomes the command as a fresh interpreter
would: the requested argv, cwd, environment (os.environ replaced), sys.path (its PYTHONPATH's folders, as Python's
start-up puts them), stdin/stdout/stderr (stdio objects rebuilt as Python's start-up builds them), its own session
if asked, signal dispositions as exec leaves them (the caller's ignored ones kept ignored, the rest default, then
Python's own SIGINT/SIGPIPE/SIGXFSZ set-up) and the caller's signal mask. It has a real pid (signals reach it, it may
be killed) and the server reports its exit status.

A command gets a real subprocess instead where the pre-imported libraries could have read something else at
import: any difference in the variables they read (CONTROLLED_ENV: another set of values gets a server of its own;
SET_AT_FORK: those read only when used go with the command), a PYTHONPATH folder holding a module the server
imported (or a sitecustomize), an `env_set` of such a variable on the command line or in a config dir (-cd, -cp, a
search path) or a file there that cannot be read as plain YAML, or a subprocess argument the server does not carry
over (shell, preexec_fn, pass_fds, user...).
Tests of a cold start (import-time behaviour, start-up speed) use subprocess itself.

Shell scripts (the docs' runnable commands): `shim_env(env)` puts a folder first on PATH whose `python` and
`nlpexp` hand their command to the server (tests/forkshim.py) when it is forkable, else exec the real program (and
exports bash functions of those names that call them, for a script that changes PATH).

NLPEXP_FORKSERVER_LOG=<file>: one line per command (forked / fallback and why / server-start with the variables that
differ from the test process's and its start-up's CPU time / ended with a forked command's CPU time), to count them.
"""

from __future__ import annotations

import collections
import errno
import json
import os
import select
import shlex
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
                  "XDG_", "HOME", "TMPDIR", "TEMP", "TMP", "PATH", "LD_", "TQDM")
# transformers' W&B integration prints a line when imported with WANDB_MODE=offline, which a fresh process prints
# only if it gets that far: with it set, the server leaves out what imports that integration (the tests' own
# environment says `dryrun`, W&B's and nlpexp's other name for offline, which prints nothing: tests/conftest.py)
PRINT_ON_IMPORT = {"WANDB_MODE": ("offline", ("transformers.trainer", "sentence_transformers"))}
# the child is built for these: its stdio (PYTHONUNBUFFERED), its sys.path (PYTHONPATH: the server has none)
_HANDLED_AT_FORK = {"PYTHONUNBUFFERED", "PYTHONPATH"}
# CONTROLLED_ENV names that the pre-imported libraries read when they use them, not at import (Hydra reads
# HYDRA_FULL_ERROR when a job fails, huggingface_hub HF_TOKEN when a request needs a token; PATH is not one: the
# imports look programs up): the child gets them with the rest of its environment, and they do not make a server of
# their own (a test that sets one would start a server for a launch or two). A server records
# the variables its imports look up by name (os.environ[...], .get, os.getenv, `in`): one of these among them (a new
# library version that reads it at import) is part of every server's key from then on (_read_at_import), and the
# server that read it forks only the commands with the value it had.
SET_AT_FORK = ("HYDRA_FULL_ERROR", "HF_TOKEN")
_NOT_CARRIED = ("preexec_fn", "pass_fds", "user", "group", "extra_groups", "umask", "executable", "process_group")
_CONFIG_DIR_ARGS = ("-cd", "--config-dir", "-cp", "--config-path")
# pip blocks imports once it installs, and a child runs the server's atexit functions (torch's import at exit)
_NOT_FORKED_MODULES = ("pip",)
_STATUS = struct.Struct("qqd")  # pid (or 0 then the exit status), wait status, CPU seconds of the child
_PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOG_VARIABLE = "NLPEXP_FORKSERVER_LOG"
SHIM_FOLDER = "nlpexp-forkserver-"  # tempfile prefix of a server's folder; its bin/ holds the shims

forked_cpu_s = 0.0  # user+sys seconds of the forked children that ended (RUSAGE_CHILDREN does not see them)
MAX_SERVERS = 4  # one per set of CONTROLLED_ENV values met (a test's own TQDM_DISABLE=1, ...), the newest ones
_servers: dict[frozenset, dict] = {}
_read_at_import: set[str] = set()  # the SET_AT_FORK names a server's imports looked up
# CONTROLLED_ENV variables a server's imports added to its environment, with their values (sklearn's
# os.environ.setdefault("KMP_DUPLICATE_LIB_OK", "True") and KMP_INIT_AT_FORK, torch inductor's
# TORCHINDUCTOR_CACHE_DIR): a test process that imports those libraries itself gets them mid-session, and an
# environment that holds such a value where the server's had none is the one its imports made, the same for them:
# key_of leaves these out (one server, not a second one for the rest of the session: 8-9 CPU-s each). A value of
# its own (another one) is part of the key as before.
_added_at_import: dict[str, str] = {}
shared_start = None  # where set (tests/forkshare.py), `start`'s stand-in: another process starts the servers
shared_added = None  # where set (tests/forkshare.py), the variables the imports of the servers started so far added


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
    env = os.environ if kwargs.get("env") is None else kwargs["env"]
    why = unforkable(args, kwargs, env)
    if not why:
        server = _server(env)
        why = server["problem"] if server["path"] is None else server_problem(env, kwargs.get("cwd"), server)
    log("fallback" if why else "forked", why, args)
    if not why:
        return _Forked(args, server=server["path"], reset_sigint=reset_sigint, account=server, **kwargs)
    if reset_sigint:
        kwargs["preexec_fn"] = _default_sigint
    return subprocess.Popen(args, **kwargs)


def shim_env(env: dict) -> dict:
    """`env` with the shims of the server for `env` first on PATH: a shell's `python`/`nlpexp` commands fork."""
    server = _server(env)
    if server["path"] is None:
        return env
    if not server.get("shims"):  # this process's own (a server may serve several)
        server["shims"] = shims = os.path.join(tempfile.mkdtemp(prefix=SHIM_FOLDER), "bin")
        os.mkdir(shims)
        for name in ("python", "nlpexp"):
            config = {"socket": server["path"], "key": sorted(server["key"]), "name": name, "shims": shims,
                      "python": sys.executable, "imported": server["imported"], "read": server["read"],
                      "seen": server["seen"], "keyed": sorted(_read_at_import), "added": _added_at_import,
                      "yaml": _yaml_folder()}
            with open(os.path.join(shims, name), "w") as shim:
                shim.write(f"#!{sys.executable} -IS\nimport sys\nsys.path.insert(0, {str(_PROJECT_ROOT)!r})\n"
                           f"from tests.forkshim import main\nmain({config!r})\n")
            os.chmod(os.path.join(shims, name), 0o755)
    shims = server["shims"]
    # bash's functions come before any folder on PATH: a script that puts one first (a venv's activate) still
    # reaches the shims; exported, as PATH is, they reach the shells the script starts
    functions = {f"BASH_FUNC_{name}%%": f'() {{ {shlex.quote(os.path.join(shims, name))} "$@"\n}}'
                 for name in ("python", "nlpexp")}
    return {**env, **functions, "PATH": os.pathsep.join([shims, *filter(None, [env.get("PATH")])])}


def _yaml_folder() -> str:
    """The folder PyYAML is imported from (a shim, started without site-packages, reads config files with it)."""
    import yaml

    return os.path.dirname(os.path.dirname(os.path.abspath(yaml.__file__)))


def log(verdict: str, why: str, args) -> None:
    path = os.environ.get(LOG_VARIABLE)
    if path:
        test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
        words = [os.fsdecode(arg) for arg in ([args] if isinstance(args, str | bytes | os.PathLike) else args)]
        command = " ".join([os.path.basename(words[0]), *words[1:3]])[:160].replace("\n", " ").replace("\t", " ")
        with open(path, "a") as out:
            out.write(f"{verdict}\t{why}\t{test}\t{command}\n")


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def unforkable(args, kwargs, env) -> str:
    """Why the server cannot run `args` as a fresh process would ('' where it can)."""
    if isinstance(args, str | bytes) or kwargs.get("shell"):
        return "a shell command"
    if carried := [name for name in _NOT_CARRIED if kwargs.get(name)]:
        return f"{carried[0]}= is not carried over"
    args = [os.fsdecode(arg) for arg in args]
    if len(args) < 2 or args[0] != sys.executable:
        return "not this interpreter"
    if kwargs.get("restore_signals") is False:
        return "restore_signals=False"
    if not (args[1] in ("-m", "-c") and len(args) > 2 or not args[1].startswith("-")):
        return f"interpreter option {args[1]}"
    if args[1] == "-m" and args[2] in _NOT_FORKED_MODULES:
        return f"-m {args[2]}"
    if args[1] == "-c":
        return ""
    script = args[1] if args[1] != "-m" else None
    return _config_problem(args[2 if script else 3:], os.fsdecode(kwargs.get("cwd") or os.getcwd()), script, env)


def _config_problem(args: list[str], cwd: str, script: str | None, env) -> str:
    """Where a command line could make Hydra set an import-time variable (env_set) in the job: '' if nowhere. A
    config dir or search path is read whole (_file_problem for each YAML file there)."""
    folders = []
    for i, arg in enumerate(args):
        name, _, value = arg.partition("=")
        if name in _CONFIG_DIR_ARGS:
            value = value if "=" in arg else (args[i + 1] if i + 1 < len(args) else "")
            base = os.path.dirname(os.path.abspath(script)) if name in ("-cp", "--config-path") and script else cwd
            folders.append(os.path.join(base, value) if "://" not in value else value)
        elif "env_set" in name:  # hydra.job.env_set.NAME=, hydra.job.env_set={...}, hydra/job/env_set=<file>
            variable = name.partition("env_set")[2].lstrip("./")
            if not variable or _import_time(variable):
                return f"{name} on the command line"
        elif name.lstrip("+~").startswith("hydra.searchpath"):
            for entry in value.strip("[]").split(","):
                scheme, _, where = entry.strip().strip("'\"").partition("://")
                folders.append(where if scheme == "file" else _package_folder(where, cwd, env) if scheme == "pkg"
                               else entry)
    for folder in folders:
        if not folder or not os.path.isdir(folder):
            return f"config dir {folder!r} is not a folder here"
        for path in Path(folder).rglob("*"):
            if path.suffix in (".yaml", ".yml") and path.is_file():
                if any(word.decode() in str(path.relative_to(folder)) for word in _MENTIONS):
                    return f"{path}: a config group of env_set or searchpath"  # its keys are the variables
                if why := _file_problem(path):
                    return why
    return ""


_MENTIONS = (b"env_set", b"searchpath")


def _file_problem(path: Path) -> str:
    """Where a config file could set an import-time variable or name another search path: '' if it cannot. A file
    that mentions env_set or searchpath is read as YAML, and each mention must be an `env_set` key holding a map of
    other variables (or none: a run's saved .hydra/hydra.yaml), a `searchpath` key holding nothing or text in a value
    outside a defaults list (a run's saved overrides: data, never applied); a mention anywhere else (a package header,
    a comment, a dotted key, a defaults list choosing a file) or a file that is not plain YAML is one."""
    data = path.read_bytes()
    mentions = sum(data.count(word) for word in _MENTIONS)
    if not mentions:
        return ""
    try:
        import yaml

        harmless = _harmless_mentions(yaml.safe_load(data))
    except Exception:  # not plain YAML (a tag, a syntax error), or no PyYAML where this runs (a shim)
        harmless = -1
    return "" if harmless == mentions else f"{path} may set an import-time variable or a search path"


def _harmless_mentions(node, choosing: bool = False) -> int:
    """The mentions of env_set and searchpath in a YAML tree that set nothing import-time (see _file_problem);
    `choosing`: inside a defaults list."""
    if isinstance(node, str):
        return 0 if choosing else sum(node.count(word.decode()) for word in _MENTIONS)
    if isinstance(node, list):
        return sum(_harmless_mentions(value, choosing) for value in node)
    if not isinstance(node, dict):
        return 0
    count = 0
    for key, value in node.items():
        if key == "env_set" and (value is None or isinstance(value, dict) and all(
                isinstance(name, str) and not _import_time(name) for name in value)):
            count += 1 + sum(_harmless_mentions([name, text]) for name, text in (value or {}).items())
        elif key == "searchpath" and not value:
            count += 1
        elif not any(word.decode() in str(key) for word in _MENTIONS):  # (another key naming them: not counted)
            count += _harmless_mentions(value, choosing or key == "defaults")
    return count


def _import_time(variable: str) -> bool:
    """A variable whose value the server's imports may have used (an env_set of it in the job would differ)."""
    return variable.startswith(CONTROLLED_ENV) or variable in PRINT_ON_IMPORT


def _package_folder(package: str, cwd: str, env) -> str:
    """The folder of `pkg://<package>` on the child's PYTHONPATH or this process's sys.path, or ''."""
    for entry in [*env.get("PYTHONPATH", "").split(os.pathsep), *sys.path]:
        folder = os.path.join(cwd, entry, *package.split("."))
        if entry and os.path.isdir(folder):
            return folder
    return ""


def key_of(env, keyed=None, added=None) -> frozenset:
    """The CONTROLLED_ENV values of `env` that a server's imports saw (PATH without the shims' folders), less those
    the imports themselves add (`added`, default: _added_at_import); of the SET_AT_FORK ones, those `keyed`
    (default: those read at import so far)."""
    keyed = _read_at_import if keyed is None else keyed
    added = _added_at_import if added is None else added
    return frozenset((k, _value(k, env)) for k in env if k.startswith(CONTROLLED_ENV) and k not in _HANDLED_AT_FORK
                     and (k not in SET_AT_FORK or k in keyed) and added.get(k) != env[k]) | _printing(env)


def _value(name: str, env) -> str | None:
    return _unshimmed(env[name]) if name == "PATH" and name in env else env.get(name)


def _printing(env) -> frozenset:
    """The PRINT_ON_IMPORT settings of `env` (the only W&B variable a pre-imported library reads at import)."""
    return frozenset((k, v) for k, (v, _) in PRINT_ON_IMPORT.items() if env.get(k) == v)


def _unshimmed(path: str) -> str:
    """PATH without the shims' folders and without a folder's second mention (a lookup finds the same programs: a
    venv's activate script puts its bin/ first again, where the tests' PATH had it already)."""
    kept: list[str] = []
    for folder in path.split(os.pathsep):
        shim = os.path.basename(folder) == "bin" and os.path.basename(os.path.dirname(folder)).startswith(SHIM_FOLDER)
        if not shim and folder not in kept:
            kept.append(folder)
    return os.pathsep.join(kept)


def server_problem(env, cwd, server: dict) -> str:
    """Why `server` cannot fork a command with environment `env` and working directory `cwd` ('' where it can): a
    SET_AT_FORK variable its imports read with another value than the command's, or the command's PYTHONPATH."""
    for name in server["read"]:
        if name in SET_AT_FORK and _value(name, env) != server["seen"].get(name):
            return f"{name} is read at import"
    return _pythonpath_problem(env, cwd, server)


def _pythonpath_problem(env, cwd, server: dict) -> str:
    """Why the child cannot take `env`'s PYTHONPATH on top of the server's imports ('' where it can): a folder
    holding a module of the same name as one imported (it would have won in a fresh process; a portion of an
    imported namespace package joins it, as it would), or a sitecustomize/usercustomize (run at start-up)."""
    entries = env.get("PYTHONPATH", "").split(os.pathsep) if env.get("PYTHONPATH") else []
    if "" in entries:
        return "an empty PYTHONPATH entry"
    for entry in entries:
        folder = os.path.join(cwd or os.getcwd(), entry)
        if os.path.isfile(folder):
            return f"PYTHONPATH entry {entry} is a file"
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            top = name.split(".")[0]
            if top in ("sitecustomize", "usercustomize"):
                return f"PYTHONPATH entry {entry} holds {name}"
            if top not in server["imported"]:
                continue
            inside = os.path.join(folder, name)
            portion = top == name and os.path.isdir(inside) and not any(
                os.path.exists(os.path.join(inside, f"__init__{ext}")) for ext in (".py", ".pyc"))
            modules = server["imported"][top]  # None: not a namespace package
            if modules is None or not portion or {n.split(".")[0] for n in os.listdir(inside)} & set(modules):
                return f"PYTHONPATH entry {entry} holds {name}"
    return ""


def _server(env) -> dict:
    """The server whose imports saw `env`'s CONTROLLED_ENV values (started at the first request): a dict with its
    socket `path` (None where it could not start, `problem` says why). Its start-up's CPU time counts in
    forked_cpu_s (the test that started it, or asked for it first, pays for it) until it is waited for."""
    global forked_cpu_s
    key = key_of(env)
    if key not in _servers and shared_added is not None:  # what the other processes' servers added (_added_at_import)
        _added_at_import.update({k: v for k, v in shared_added().items() if k.startswith(CONTROLLED_ENV)})
        key = key_of(env)
    if key not in _servers:
        if len(_servers) == MAX_SERVERS:  # the least recently used one goes (test files tend to keep to one)
            _stop(_servers.pop(next(iter(_servers))))
        seen = {name: _value(name, env) for name in SET_AT_FORK if name in env}
        differing = ", ".join(sorted(k for k, v in key ^ key_of(os.environ)))
        server = (shared_start or start)(key, seen)
        forked_cpu_s += 0.0 if server.get("joined") else server["cpu_s"]
        log("server-joined" if server.get("joined") else "server-start", f"{differing} ({server['cpu_s']:.1f} CPU-s)",
            [sys.executable, __file__])
        _servers[key] = server
        _read_at_import.update(set(server["read"]) & set(SET_AT_FORK))
        _added_at_import.update({k: v for k, v in server.get("added", {}).items() if k.startswith(CONTROLLED_ENV)})
        if key_of(env) != key:  # a SET_AT_FORK name it read: its key has the value it had
            _servers[key_of(env)] = {**_servers.pop(key), "key": key_of(env)}
            key = key_of(env)
        if len(_servers) == 1:
            import atexit

            atexit.register(lambda: [_stop(server) for server in _servers.values()])
    _servers[key] = _servers.pop(key)  # the most recently used last
    return _servers[key]


def start(key: frozenset, seen: dict) -> dict:
    """A new server whose imports see the `key` values and the SET_AT_FORK ones `seen` (a dict: its `process`, socket
    `path` or the `problem`, what it `imported` and `read` at import, the `cpu_s` of its start)."""
    folder = tempfile.mkdtemp(prefix=SHIM_FOLDER)
    path = os.path.join(folder, "socket")
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(CONTROLLED_ENV) and k not in PRINT_ON_IMPORT}
    with open(os.path.join(folder, "server.log"), "wb") as out:
        process = subprocess.Popen([sys.executable, __file__, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=out, cwd=_PROJECT_ROOT, env={**inherited, **dict(key), **seen})
    answer = process.stdout.readline().decode().strip()
    ready = answer == "ready"
    report = json.loads(Path(folder, "server.json").read_text()) if ready else {}
    return {"process": process, "path": path if ready else None, "folder": folder, "key": key,
            "problem": answer or "the server did not start", "imported": report.get("imported", {}),
            "read": report.get("read", []), "seen": seen, "cpu_s": report.get("cpu_s", 0.0), "children_cpu_s": 0.0,
            "added": report.get("added", {})}


def stop(server: dict) -> None:
    """A server ends at the end of its input (its children go on)."""
    server["process"].stdin.close()
    server["process"].wait(timeout=60)
    shutil.rmtree(server["folder"], ignore_errors=True)


def _stop(server: dict) -> None:
    """Stop a server of this process's (one another process started, tests/forkshare.py, is only forgotten): waiting
    for it counts its CPU time, and its children's, in this process's children's (forked_cpu_s has them until then)."""
    global forked_cpu_s
    if server.get("shims"):
        shutil.rmtree(os.path.dirname(server["shims"]), ignore_errors=True)
    if server["process"] is not None:
        stop(server)
        forked_cpu_s -= server["cpu_s"] + server["children_cpu_s"]  # in this process's children's time now


class _Forked(subprocess.Popen):
    """A Popen whose child the server forks (subprocess's pipes, communicate, timeouts and signals as usual)."""

    def __init__(self, args, *, server: str, reset_sigint: bool, account: dict | None = None, **kwargs):
        self._server, self._reset_sigint, self._account = server, reset_sigint, account
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
        if self._account is not None:
            self._account["children_cpu_s"] += cpu
        self._connection.close()
        log("ended", f"{cpu:.2f} CPU-s{'' if self._account is not None else ' (shim)'}", self.args)
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


class _ReadRecorder(type(os.environ)):
    """os.environ (the same variables) noting each name looked up: os.environ[name], .get(name), os.getenv(name),
    `name in os.environ`; not the lookups of a whole copy (dict(os.environ), .copy(), .items(): each name in the
    order the iteration before gave them, as for a subprocess's environment)."""

    def __init__(self, environ, read: set[str]):
        vars(self).update(vars(environ))
        self.read, self._copying = read, collections.deque()

    def __iter__(self):
        names = list(super().__iter__())
        self._copying = collections.deque(names)
        return iter(names)

    def __getitem__(self, key):
        if self._copying and self._copying[0] == key:
            self._copying.popleft()
        else:
            self._copying.clear()
            self.read.add(key)
        return super().__getitem__(key)


def _preload(folder: str) -> str:
    """Import PRELOADED with sys.stdout/sys.stderr standing for the child's; '' or why the server is unusable.
    Leaves in `folder`/server.json the top-level modules imported (a namespace package: with its modules imported),
    the environment variables the imports looked up by name and the CPU seconds the start took."""
    sys.path[0] = str(_PROJECT_ROOT)  # where `python run.py` starts its sys.path (this file's folder is not)
    sys.stdout, sys.stderr = _CurrentStream("stdout"), _CurrentStream("stderr")
    before = os.fstat(2).st_size
    environ, read = os.environ, set()
    started_with = dict(environ)
    os.environ = _ReadRecorder(environ, read)  # noqa: B003 (the same variables, looked up through it)
    try:
        skipped = [names for variable, (value, names) in PRINT_ON_IMPORT.items() if environ.get(variable) == value]
        for name in PRELOADED:
            if not any(name in names for names in skipped):
                __import__(name)
        # the test processes' caches (tests/forkwarm.py), filled here once for every child; not left importable as
        # `tests` (a child's own `tests` package, on its PYTHONPATH, must not be this one)
        import runpy

        runpy.run_path(str(_PROJECT_ROOT / "tests" / "forkwarm.py"))["install"](_PROJECT_ROOT)
    finally:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        os.environ = environ  # noqa: B003
    import threading

    if threading.active_count() != 1:
        return f"{threading.active_count()} threads after the imports: forking is unsafe"
    if os.fstat(2).st_size != before:
        return "the imports printed something (a fresh process would print it too)"
    import gc

    gc.collect()
    gc.freeze()  # the children's collections need not walk (and copy, page by page) what the imports made
    tops = {name.partition(".")[0] for name in sys.modules}
    namespaces = {top for top in tops if getattr(sys.modules.get(top), "__file__", "") is None}
    imported = {top: sorted({name.split(".")[1] for name in sys.modules if name.startswith(f"{top}.")})
                if top in namespaces else None for top in tops}
    import time

    added = {k: v for k, v in environ.items() if k not in started_with}  # (sklearn's KMP_* setdefaults)
    report = {"imported": imported, "read": sorted(read), "cpu_s": time.process_time(), "added": added}
    Path(folder, "server.json").write_text(json.dumps(report))
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


def _main_globals() -> dict:
    """What Python's start-up puts in every __main__ before the code runs, besides the module's own names."""
    return {"__annotations__": {}}


def _main(args: list[str]) -> None:
    import runpy

    if args[0] == "-m":
        sys.argv = args[1:]
        _set_path(os.getcwd())
        runpy.run_module(args[1], run_name="__main__", alter_sys=True, init_globals=_main_globals())
    elif args[0] == "-c":
        import importlib.machinery
        import types

        sys.argv = ["-c", *args[2:]]
        _set_path("")
        main = types.ModuleType("__main__")
        main.__builtins__, main.__loader__ = sys.modules["builtins"], importlib.machinery.BuiltinImporter
        vars(main).update(_main_globals())
        sys.modules["__main__"] = main
        exec(compile(args[1], "<string>", "exec"), main.__dict__)
    else:
        sys.argv = args
        _set_path(os.path.dirname(os.path.realpath(args[0])))
        runpy.run_path(args[0], run_name="__main__", init_globals=_main_globals())


def _set_path(first: str) -> None:
    """sys.path as Python's start-up makes it: the script's folder, then PYTHONPATH's folders made absolute (site's
    removeduppaths), then the interpreter's own (the server's, which started without PYTHONPATH), no duplicates."""
    path = [first]
    for entry in [*os.environ.get("PYTHONPATH", "").split(os.pathsep), *_BASE_PATH]:
        if entry and os.path.abspath(entry) not in path[1:]:
            path.append(os.path.abspath(entry))
    sys.path[:] = path


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
    _BASE_PATH = sys.path[1:]  # the interpreter's own folders (the server starts without PYTHONPATH)
    problem = _preload(os.path.dirname(sys.argv[1]))
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
