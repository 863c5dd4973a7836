"""Security: configs from other people cannot run code the allow-list does not name, and no secret is written.

The catalogue runs every escape through run.py's gate in-process (the same function run.py calls first, the
same composition Hydra does), and one of each kind end to end through `python run.py`. Each case asserts: exit
code 2, exactly one `error:` line, and no marker file (the payloads are live: see test_the_payloads_are_live).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nlpexp import NlpexpError, redaction, registry
from nlpexp.boundary import exit_on_error
from nlpexp.components import BUILTIN_TARGETS as TARGET_ALLOWLIST
from nlpexp.config import CONFIG_DIR, PROJECT_ROOT
from nlpexp.gate import check_command_line
from tests import forkserver

RUN_PY = str(PROJECT_ROOT / "run.py")


@pytest.fixture
def evil(tmp_path) -> tuple[Path, Path]:
    """(payload dir, marker): a .pth file, a module, and presets for -cd / -cp that each create the marker."""
    folder, marker = tmp_path / "evil", tmp_path / "MARKER"
    folder.mkdir()
    touch = f"open({str(marker)!r}, 'w').close()"
    (folder / "evil.pth").write_text(f"import os; {touch}\n")
    (folder / "evilcode.py").write_text(f"{touch}\nimport logging\n\nclass Evil:\n    pass\n\n"
                                        "class Handler(logging.Handler):\n    pass\n")
    presets = {
        "experiment/remote_code": {"model": {"trust_remote_code": True}},
        "experiment/pickled_weights": {"model": {"allow_pickle_weights": True}},
        "experiment/log_factory": {"hydra": {"job_logging": {"handlers": {"x": {
            "()": "subprocess.getoutput", "cmd": f"touch {marker}"}}, "root": {"handlers": ["x"]}}}},
        "experiment/log_class": {"hydra": {"job_logging": {"handlers": {"x": {"class": "evilcode.Handler"}}}}},
        "experiment/log_ext": {"hydra": {"job_logging": {"handlers": {"console": {"stream": "ext://evilcode.x"}}}}},
        "experiment/callback": {"hydra": {"callbacks": {"t": {"_target_": "site.addsitedir",
                                                              "sitedir": str(folder)}}}},
        "experiment/slurm_setup": {"defaults": [{"override /hydra/launcher": "slurm"}],
                                   "hydra": {"launcher": {"setup": [f"touch {marker}"]}}},
        "experiment/slurm_python": {"defaults": [{"override /hydra/launcher": "slurm"}],
                                    "hydra": {"launcher": {"python": f"touch {marker}; python"}}},
        "experiment/slurm_export": {"defaults": [{"override /hydra/launcher": "slurm"}],
                                    "hydra": {"launcher": {"additional_parameters": {"export": "LD_PRELOAD=x.so"}}}},
        "hparams_search/remote_params": {"defaults": [{"override /hydra/sweeper": "study"}],
                                         "hydra": {"sweeper": {"params": {"model.trust_remote_code": "choice(true)"}}}},
        "model/evil_model": {"_target_": "os.system", "command": f"touch {marker}"},
        "hparams_search/evil_choice": {"defaults": [{"override /hydra/sweeper": "study"}],
                                       "hydra": {"sweeper": {"params": {"model": "choice(tiny_bert, evil_model)"}}}},
        "experiment/decoded": {"logger": {"t": "${oc.decode:'{_target_: os.system, command: x}'}"}},
        **{f"experiment/env_{name.lower()}": {"hydra": {"job": {"env_set": {name: value}}}} for name, value in (
            ("PATH", f"{folder}:/usr/bin:/bin"), ("PYTHONPATH", str(folder)), ("LD_PRELOAD", f"{folder}/x.so"),
            ("GIT_CONFIG_COUNT", "1"), ("NLPEXP_TRUST_REMOTE_CODE", "1"))},
        "experiment/ledger_bashrc": {"paths": {"ledger_file": f"{folder}/.bashrc"}},
        "experiment/log_profile": {"hydra": {"job_logging": {"handlers": {"file": {
            "filename": f"{folder}/.profile"}}}}},
        "evil_primary": {"optimizer": {"_target_": "os.system", "command": f"touch {marker}"}},
    }
    for name, body in presets.items():
        path = folder / "conf" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        header = "# @package _global_\n" if name.startswith(("experiment/", "hparams_search/")) else ""
        path.write_text(header + yaml.safe_dump(body))
    return folder, marker


def catalogue(d: Path, m: Path) -> list[tuple[str, list[str], str]]:
    """(id, command line, what the error line must say)."""
    cd = ["-cd", str(d / "conf")]
    return [
        ("hydra-callback-addsitedir",
         ["+hydra.callbacks.t._target_=site.addsitedir", f"+hydra.callbacks.t.sitedir={d}"],
         r"hydra\.callbacks\.t\._target_='site\.addsitedir' is not allowed"),
        ("hydra-callback-from-preset", [*cd, "experiment=callback"], r"hydra\.callbacks\.t\._target_="),
        ("env-set-path", [*cd, "experiment=env_path"], r"hydra\.job\.env_set\.PATH may not be set by a config file"),
        ("env-set-pythonpath", [*cd, "experiment=env_pythonpath"], r"env_set\.PYTHONPATH may not"),
        ("env-set-ld-preload", [*cd, "experiment=env_ld_preload"], r"env_set\.LD_PRELOAD may not"),
        ("env-set-git-config", [*cd, "experiment=env_git_config_count"], r"env_set\.GIT_CONFIG_COUNT may not"),
        ("env-set-remote-code", [*cd, "experiment=env_nlpexp_trust_remote_code"], r"env_set\.NLPEXP_TRUST"),
        ("dynamic-module", ["+logger.t={_target_:transformers.dynamic_module_utils.get_class_from_dynamic_module,"
                            f"class_reference:evilcode.Evil,pretrained_model_name_or_path:'{d}'}}"],
         r"logger\.t\._target_='transformers\.dynamic_module_utils"),
        ("transformers-pipeline", ["+logger.t._target_=transformers.pipeline"], r"'transformers\.pipeline'"),
        ("trust-remote-code-preset", [*cd, "experiment=remote_code"],
         r"model\.trust_remote_code may not be set by a config file or preset"),
        ("pickled-weights-preset", [*cd, "experiment=pickled_weights"], r"model\.allow_pickle_weights may not"),
        ("remote-code-sweep-param", ["-m", *cd, "hparams_search=remote_params"],
         r"hydra\.sweeper\.params\.model\.trust_remote_code may not be set by a config file"),
        ("slurm-setup-preset", [*cd, "experiment=slurm_setup"], r"hydra\.launcher\.setup may not be set"),
        ("slurm-python-preset", [*cd, "experiment=slurm_python"], r"hydra\.launcher\.python may not be set"),
        ("slurm-export-preset", [*cd, "experiment=slurm_export"],
         r"hydra\.launcher\.additional_parameters\.export may not"),
        ("os-system", ["model._target_=os.system"], r"model\._target_='os\.system' is not allowed"),
        ("subprocess", [f"+logger.t={{_target_:subprocess.run,args:[touch,'{m}']}}"], r"'subprocess\.run'"),
        ("eval", ["+logger.t={_target_:builtins.eval,_args_:['1+1']}"], r"'builtins\.eval'"),
        ("exec", ["+logger.t._target_=builtins.exec"], r"'builtins\.exec'"),
        ("importlib", ["+logger.t={_target_:importlib.import_module,name:evilcode}"], r"'importlib\.import_module'"),
        ("runpy", [f"+logger.t={{_target_:runpy.run_path,path_name:'{d}/evilcode.py'}}"], r"'runpy\.run_path'"),
        ("torch-load", [f"+logger.t={{_target_:torch.load,f:'{d}/x.pt',weights_only:false}}"], r"'torch\.load'"),
        ("pickle", ["+logger.t={_target_:pickle.loads,_args_:[x]}"], r"'pickle\.loads'"),
        ("nested-instantiate",
         ["+logger.t={_target_:hydra.utils.instantiate,config:{_target_:nlpexp.model.ModelSpec}}"],
         r"'hydra\.utils\.instantiate'"),
        ("get-method", ["+logger.t={_target_:hydra.utils.get_method,path:os.system}"], r"'hydra\.utils\.get_method'"),
        ("partial-wrapping", ["+logger.t={_target_:functools.partial,_args_:[{_target_:nlpexp.model.ModelSpec}]}"],
         r"'functools\.partial'"),
        ("target-in-nested-list", ["+logger.t={_target_:nlpexp.logger.TensorBoardLogger,log_dir:x,"
                                   "extra:[[{_target_:os.system,command:x}]]}"],
         r"logger\.t\.extra\[0\]\[0\]\._target_='os\.system'"),
        ("args-trick", ["+optimizer._args_=[{_target_:os.system,command:x}]"], r"optimizer\._args_\[0\]\._target_"),
        ("interpolated-target", ["model._target_=${oc.env:EVIL_TARGET}"], r"model\._target_='\$\{oc\.env:EVIL"),
        ("decoded-target", [*cd, "experiment=decoded"], r"logger\.t: oc\.create / oc\.decode are not allowed"),
        ("created-target", ["+logger.t=\"${oc.create:{_target_: os.system}}\""], r"logger\.t: oc\.create"),
        ("concatenated-target", ["optimizer._target_=torch.optim.${oc.env:EVIL_TARGET}"], r"optimizer\._target_="),
        ("logging-factory", [*cd, "experiment=log_factory"],
         r"hydra\.job_logging\.handlers\.x\.\(\) may not be set .* to 'subprocess"),
        ("logging-class", [*cd, "experiment=log_class"],
         r"handlers\.x\.class may not be set .* to 'evilcode\.Handler'"),
        ("logging-ext", [*cd, "experiment=log_ext"],
         r"handlers\.console\.stream may not be set .* to 'ext://evilcode\.x'"),
        ("launcher-target", ["hydra.launcher._target_=os.system"], r"hydra\.launcher\._target_='os\.system'"),
        ("sampler-target", ["-m", "hparams_search=sbert_nli", "hydra.sweeper.sampler._target_=os.system"],
         r"hydra\.sweeper\.sampler\._target_"),
        ("pruner-target", ["-m", "hparams_search=sbert_nli", "hydra.sweeper.pruner._target_=builtins.exec"],
         r"hydra\.sweeper\.pruner\._target_"),
        ("group-sweep-to-evil-preset", ["-m", *cd, "model=tiny_bert,evil_model"], r"model\._target_='os\.system'"),
        ("params-choice-of-evil-preset", ["-m", *cd, "hparams_search=evil_choice"], r"model\._target_='os\.system'"),
        ("sweep-over-target", ["-m", "model._target_=nlpexp.model.ModelSpec,os.system"],
         r"sweeps 'model\._target_'"),
        ("cfg-job", ["--cfg", "job", "optimizer._target_=builtins.exec"], r"'builtins\.exec'"),
        ("primary-config", ["-cp", str(d / "conf"), "-cn", "evil_primary"], r"optimizer\._target_='os\.system'"),
        ("ledger-into-bashrc", [*cd, "experiment=ledger_bashrc"], r"paths\.ledger_file may not be set .*\.bashrc"),
        ("log-into-profile", [*cd, "experiment=log_profile"],
         r"hydra\.job_logging\.handlers\.file\.filename may not be set .*\.profile"),
        ("experimental-rerun", ["--experimental-rerun", str(d / "config.pickle")], r"--experimental-rerun"),
    ]


def _cases():
    ids = [case[0] for case in catalogue(Path("/d"), Path("/m"))]
    assert len(ids) == len(set(ids)) >= 25
    return ids


def _one_error_line(output: str, pattern: str) -> None:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    assert __import__("re").search(pattern, lines[0]), lines[0]


@pytest.mark.parametrize("case", _cases())
def test_catalogue_in_process(case, evil, capsys, monkeypatch):
    folder, marker = evil
    monkeypatch.setenv("EVIL_TARGET", "os.system")
    _, argv, pattern = next(c for c in catalogue(folder, marker) if c[0] == case)
    def never_reached() -> None:
        raise AssertionError("the gate let Hydra start")

    gate = [lambda args: check_command_line(args, RUN_PY, str(CONFIG_DIR), "config")]
    with pytest.raises(SystemExit) as exited:
        exit_on_error(never_reached, argv, before=gate)  # run.py's own boundary and gate
    captured = capsys.readouterr()
    assert exited.value.code == 2
    _one_error_line(captured.out + captured.err, pattern)
    assert not marker.exists()


END_TO_END = ("hydra-callback-addsitedir", "env-set-path", "dynamic-module", "trust-remote-code-preset",
              "logging-factory", "sampler-target", "primary-config", "args-trick")


@pytest.mark.parametrize("case", END_TO_END)
def test_catalogue_end_to_end(case, evil, tmp_path):
    folder, marker = evil
    _, argv, pattern = next(c for c in catalogue(folder, marker) if c[0] == case)
    if not case.startswith("env-set-"):
        # the env_set presets of the env-set-* cases name import-time variables (PATH, LD_PRELOAD, ...): a config dir
        # holding them is run as a fresh process by the fork server (a whole start-up: 1.3 CPU-s); this case's run
        # reads none of them, and the in-process catalogue checks each case with all of them there
        for preset in (folder / "conf" / "experiment").glob("env_*.yaml"):
            preset.unlink()
    done = forkserver.run([sys.executable, RUN_PY, *argv, f"hydra.run.dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              filter(None, (str(folder), os.environ.get("PYTHONPATH"))))})  # evilcode importable
    assert done.returncode == 2, done.stdout + done.stderr
    _one_error_line(done.stdout + done.stderr, pattern)
    assert not marker.exists()
    assert not (tmp_path / "run").exists()


def test_the_payloads_are_live(evil):
    """Without the gate the catalogue's payloads do run: the marker assertions above can fail."""
    folder, marker = evil
    subprocess.run([sys.executable, "-c", f"import site; site.addsitedir({str(folder)!r})"], check=True)
    assert marker.exists()
    marker.unlink()
    code = ("from transformers.dynamic_module_utils import get_class_from_dynamic_module as g; "
            f"g('evilcode.Evil', {str(folder)!r}, trust_remote_code=True)")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                   env={**os.environ, "HF_MODULES_CACHE": str(folder / "modules")})
    assert marker.exists()


def _yaml_targets(node, found: list[str]) -> list[str]:
    if isinstance(node, dict):
        found += [v for k, v in node.items() if k == "_target_"]
        for value in node.values():
            _yaml_targets(value, found)
    elif isinstance(node, list):
        for value in node:
            _yaml_targets(value, found)
    return found


def test_every_target_in_conf_and_experiments_is_allowed_and_exists():
    from hydra.utils import get_object

    files = [*CONFIG_DIR.rglob("*.yaml"), *(PROJECT_ROOT / "experiments").rglob("*.yaml")]
    targets = {t for path in files for t in _yaml_targets(yaml.safe_load(path.read_text()), [])}
    assert len(targets) >= 20
    assert targets <= set(TARGET_ALLOWLIST), targets - set(TARGET_ALLOWLIST)
    assert not [t for t in TARGET_ALLOWLIST if "*" in t], "no wildcards"
    for target in TARGET_ALLOWLIST:
        assert callable(get_object(target)), target


@pytest.mark.parametrize("argv", [[], ["-m", "hparams_search=sbert_nli"], ["-m", "hparams_search=embedding_ablation",
                                  "hydra/launcher=parallel"], ["-m", "hparams_search=model_comparison",
                                  "hydra/launcher=slurm", "hydra/sweeper/pruner=median"],
                                  ["model.trust_remote_code=true", "model.allow_pickle_weights=true"],
                                  ["hydra/launcher=slurm", "hydra.launcher.setup=[module load cuda]"],
                                  ["experiment=imdb", "model=bert"], ["--cfg", "job"]], ids=str)
def test_the_gate_lets_the_projects_own_configs_through(argv):
    check_command_line(argv, RUN_PY, str(CONFIG_DIR), "config")


def test_switches_from_the_environment_and_the_run_log_says_so(monkeypatch, caplog):
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from nlpexp.config import check_run
    from nlpexp.model import ModelSpec

    monkeypatch.setenv("NLPEXP_TRUST_REMOTE_CODE", "1")
    assert ModelSpec(name="m", name_or_path="x").trust_remote_code
    with initialize_config_dir(config_dir=str(CONFIG_DIR)):
        cfg = compose("config", overrides=["model.allow_pickle_weights=true"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    job = copy.deepcopy(cfg)
    try:
        with open_dict(job):
            del job["hydra"]
        check_run(job)
    finally:
        HydraConfig.instance().cfg = None
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("model.trust_remote_code is on" in w for w in warned)
    assert any("model.allow_pickle_weights is on" in w for w in warned)


@pytest.mark.parametrize("key,secret", [("hf_token", True), ("WANDB_API_KEY", True), ("apiKey", True),
                                        ("db.password", True), ("client_secret", True), ("credentials", True),
                                        ("tokenizer", False), ("max_new_tokens", False), ("pad_token_id", False),
                                        ("eos_token", False), ("monkey", False), ("keyword", False)])
def test_secret_keys_are_whole_words(key, secret):
    assert redaction.is_secret_key(key) is secret


def test_redaction_by_value_url_and_assignment(monkeypatch):
    monkeypatch.setenv("SOME_SERVICE_TOKEN", "s3cr3t-value-42")
    monkeypatch.setenv("SHORT_KEY", "short")  # under 8 characters: too common to redact
    redaction.take_secrets()  # (values are taken at process start and where a run starts: compose, run.py)
    text = ("got 's3cr3t-value-42' from postgresql://me:pa55word@db/optuna; +extra.my_api_key=abc model=short "
            "pad_token_id=0")
    assert redaction.redact_text(text) == ("got '<redacted>' from postgresql://me:<redacted>@db/optuna; "
                                           "+extra.my_api_key=<redacted> model=short pad_token_id=0")


def test_registry_names_stay_inside_the_registry(tmp_path, capsys):
    root = tmp_path / "registry"
    (tmp_path / "outside" / "v1" / "model").mkdir(parents=True)
    root.mkdir()
    for reference in (f"registry:{tmp_path / 'outside'}@v1", "registry:../outside@v1", "registry:..@v1"):
        with pytest.raises(NlpexpError, match="registry name"):
            registry.resolve(reference, root)
    (root / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(NlpexpError, match="outside the registry"):
        registry.resolve("registry:link@v1", root)
    assert registry.main(["--root", str(root), "show", "../outside@v1"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1 and captured.err.startswith("error: ")


def test_a_study_name_cannot_lead_out_of_the_registry(tmp_path):
    from types import SimpleNamespace

    from nlpexp.sweep.summary import promote_best

    run = tmp_path / "run"
    (run / "best_model").mkdir(parents=True)
    best = SimpleNamespace(user_attrs={"run_dir": str(run)}, number=0)
    import optuna

    study = SimpleNamespace(study_name="../../escape", best_trial=best, get_trials=lambda **_: [best],
                            directions=[optuna.study.StudyDirection.MAXIMIZE])
    with pytest.raises(NlpexpError, match="registry name"):
        promote_best(study, tmp_path / "registry")
    assert not (tmp_path / "escape").exists()


def test_a_studys_identity_includes_its_storage(tmp_path):
    from nlpexp.sweep.study import default_study_name

    definition = {"arguments": ["x=1"], "direction": "maximize"}
    places = [(None, None, "a"), (None, None, "b"), (None, str(tmp_path / "s"), "a"),
              ("postgresql://u@h/db1", None, "a"), ("postgresql://u@h/db2", None, "a")]
    names = {default_study_name("p", definition, storage, sweep_dir, tmp_path / studies)
             for storage, sweep_dir, studies in places}
    assert len(names) == 5
    same = {default_study_name("p", definition, f"postgresql://u:{pw}@h/db", None, tmp_path) for pw in ("a", "b")}
    assert len(same) == 1, "a new password is the same study"


def test_git_is_called_by_absolute_path(tmp_path, monkeypatch):
    from nlpexp.paths import GIT, git_state

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "git").write_text(f"#!/bin/sh\ntouch {tmp_path / 'MARKER'}\n")
    (fake / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    git_state()
    assert Path(GIT).is_absolute() and not (tmp_path / "MARKER").exists()


# ---- secrets: planted in the environment, interpolated into every kind of field, grepped for afterwards ----

SECRETS = {"HF_TOKEN": "hf_planted_token_0123456789", "WANDB_API_KEY": "planted-wandb-key-abcdef0123",
           "GITHUB_TOKEN": "ghp_planted_github_98765", "MY_DB_PASSWORD": "planted-db-password-555",
           "ACME_CREDENTIALS": "planted-acme-credentials-777", "OTHER_SECRET": "planted-other-secret-999"}
LITERAL = "planted-literal-on-the-command-line-31337"
SMOKE = ["task=sbert_nli", "model=tiny_bert", "debug=smoke"]


def _run_py(args: list[str], cwd: Path, data_root: Path) -> subprocess.CompletedProcess:
    # (dryrun: W&B's other name for offline, which transformers does not announce at import: tests/conftest.py)
    env = {**os.environ, **SECRETS, "OMP_NUM_THREADS": "1", "WANDB_MODE": "dryrun", "NLPEXP_DATA_DIR": str(data_root)}
    return forkserver.run([sys.executable, RUN_PY, *args], capture_output=True, text=True, timeout=600, cwd=cwd,
                          env=env)


@pytest.fixture(scope="module")
def secret_run(tmp_path_factory, data_root):
    """One smoke run with planted secrets in the config, the overrides, TensorBoard hparams, W&B and MLflow."""
    tmp = tmp_path_factory.mktemp("secrets")
    done = _run_py([*SMOKE, f"hydra.run.dir={tmp / 'run'}", f"paths.ledger_file={tmp / 'ledger.jsonl'}",
                    "logger=[tensorboard,wandb,mlflow]", "logger.wandb.mode=offline",  # mlflow: a store in the run
                    "+note=${oc.env:GITHUB_TOKEN}", f"+extra.my_api_key={LITERAL}",
                    "+copied=${extra.my_api_key}",  # a preset's copy into a plain key: redacted by its value too
                    "model.name=${oc.env:WANDB_API_KEY}",  # -> TensorBoard hparams, W&B config, ledger
                    "logger.wandb.tags=[${oc.env:HF_TOKEN}]", "logger.wandb.group=${oc.env:MY_DB_PASSWORD}",
                    "+hydra.job.env_set.ACME_TOKEN=${oc.env:ACME_CREDENTIALS}"], tmp, data_root)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp, done, data_root


def _leaks(root: Path, *texts: str) -> list[str]:
    found = []
    for path in [p for p in root.rglob("*") if p.is_file()]:
        data = path.read_bytes()
        found += [f"{path}: {name}" for name, value in [*SECRETS.items(), ("literal", LITERAL)]
                  if value.encode() in data]
    for text in texts:
        found += [f"output: {name}" for name, value in [*SECRETS.items(), ("literal", LITERAL)] if value in text]
    return found


def test_planted_secrets_appear_nowhere(secret_run):
    tmp, done, _ = secret_run
    run = tmp / "run"
    assert (run / ".hydra" / "hydra.yaml").is_file() and list((run / "tensorboard").iterdir())
    assert list((run / "wandb").rglob("*.wandb")), "the W&B run file is grepped too"
    assert _leaks(tmp, done.stdout, done.stderr) == []
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["tokenizer"] and saved["model"]["tokenizer"] != redaction.REDACTED
    assert saved["extra"]["my_api_key"] == redaction.REDACTED
    record = json.loads((tmp / "ledger.jsonl").read_text().splitlines()[-1])
    assert f"+extra.my_api_key={redaction.REDACTED}" in record["overrides"]


def test_a_bad_value_from_a_secret_is_redacted_in_the_error_line_and_run_log(tmp_path, data_root):
    done = _run_py([*SMOKE, f"hydra.run.dir={tmp_path / 'run'}", f"paths.ledger_file={tmp_path / 'ledger.jsonl'}",
                    "trainer.precision=${oc.env:OTHER_SECRET}"], tmp_path, data_root)
    assert done.returncode == 2
    errors = [line for line in (done.stdout + done.stderr).splitlines() if "error:" in line]
    assert len(errors) == 1 and "trainer.precision" in errors[0] and redaction.REDACTED in errors[0], errors
    assert _leaks(tmp_path, done.stdout, done.stderr) == []


def test_a_saved_config_re_runs_to_the_same_metrics(secret_run):
    tmp, _, data_root = secret_run
    # the saved config names a ledger and a registry (this test's NLPEXP_REGISTRY_DIR differs from the fixture's)
    # that are not this person's paths: only the person says where they go
    again = _run_py(["--config-path", str(tmp / "run"), "--config-name", "config", f"hydra.run.dir={tmp / 'again'}",
                     f"paths.ledger_file={tmp / 'ledger.jsonl'}",
                     f"paths.registry_dir={os.environ['NLPEXP_REGISTRY_DIR']}"], tmp, data_root)
    assert again.returncode == 0, again.stderr[-3000:]

    def quality(run: str) -> dict:
        metrics = json.loads((tmp / run / "metrics.json").read_text())
        return {k: v for k, v in metrics.items() if k.startswith(("val/", "test/")) or k == "train/mean_loss"}

    assert quality("again") == quality("run") and quality("run")
    assert (tmp / "again" / "run.log").is_file() and not _leaks(tmp / "again")


def test_hydra_files_are_rewritten_redacted(secret_run):
    tmp, _, _ = secret_run
    hydra_yaml = (tmp / "run" / ".hydra" / "hydra.yaml").read_text()
    assert "ACME_TOKEN: <redacted>" in hydra_yaml
    overrides = yaml.safe_load((tmp / "run" / ".hydra" / "overrides.yaml").read_text())
    assert f"+extra.my_api_key={redaction.REDACTED}" in overrides and "model=tiny_bert" in overrides


def test_a_saved_config_cannot_turn_a_switch_on_but_its_command_line_can(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"model": {"trust_remote_code": True}}))
    saved = ["--config-path", str(tmp_path), "--config-name", "config"]
    with pytest.raises(NlpexpError, match="model.trust_remote_code may not be set by a config file"):
        check_command_line(saved, RUN_PY, str(CONFIG_DIR), "config")
    check_command_line([*saved, "model.trust_remote_code=true"], RUN_PY, str(CONFIG_DIR), "config")
