"""Run dirs, registry entries and data sources that others hand over are data (docs/security.md): what their files
say never picks a local folder to copy or read, and a malformed file is one `error:` line naming it, exit 2."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from nlpexp import NlpexpError, registry
from nlpexp.config import CONFIG_DIR, compose
from nlpexp.data.readers import Source, read_split
from nlpexp.schema import validate
from nlpexp.sweep.study import RUN_DIR

EVAL_CONFIG = "mode: eval\noptimized_metric: val/accuracy\nmodel: {{name: innocent, name_or_path: {source}}}\n"


def _eval_run(folder: Path, source: str, extra: str = "") -> Path:
    """A handed eval-only run dir: its metrics, and a config that names the model it says it evaluated."""
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"val/accuracy": 0.9}))
    (folder / "config.yaml").write_text(EVAL_CONFIG.format(source=source) + extra)
    return folder


def _model(folder: Path, content: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "weights").write_text(content)
    return folder


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1 and captured.err.startswith("error: "), \
        captured.err
    return captured.err


def _copied(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []


# ---- 1. an eval-only run's config does not choose the folder register copies ----

def test_an_eval_only_run_does_not_copy_the_local_folder_its_config_names(tmp_path, capsys):
    victim = tmp_path / "x" / "victim_private"
    victim.mkdir(parents=True)
    (victim / "id_rsa").write_text("PLANTED PRIVATE KEY")
    run = _eval_run(tmp_path / "run", str(victim))
    root = tmp_path / "registry"
    assert registry.main(["--root", str(root), "register", str(run), "--name", "innocent"]) == 2
    assert "--model" in _one_error_line(capsys)
    assert "id_rsa" not in _copied(root)


def test_the_person_names_the_evaluated_folder_on_the_command_line(tmp_path, capsys):
    run = _eval_run(tmp_path / "run", "/somewhere/else")
    mine = _model(tmp_path / "mine", "my weights")
    root = tmp_path / "registry"
    assert registry.main(["--root", str(root), "register", str(run), "--name", "m", "--model", str(mine)]) == 0
    assert (root / "m" / "v1" / "model" / "weights").read_text() == "my weights"


def test_model_is_refused_for_a_run_with_its_own_best_model(tmp_path, capsys):
    run = _eval_run(tmp_path / "run", "null")
    _model(run / "best_model", "trained")
    root = tmp_path / "registry"
    assert registry.main(["--root", str(root), "register", str(run), "--name", "m",
                          "--model", str(_model(tmp_path / "other", "x"))]) == 2
    assert "best_model" in _one_error_line(capsys) and _copied(root) == []


def test_a_registry_reference_is_looked_up_in_the_registry_the_command_was_given(tmp_path, capsys):
    root, theirs = tmp_path / "registry", tmp_path / "their_registry"
    for folder, content in ((root, "public weights"), (theirs, "PLANTED PRIVATE WEIGHTS")):
        trained = tmp_path / f"trained-{folder.name}"
        _model(trained / "best_model", content)
        (trained / "metrics.json").write_text("{}")
        registry.register(trained, "base", folder)
    run = _eval_run(tmp_path / "run", "'registry:base@latest'", f"paths: {{registry_dir: {theirs}}}\n")
    assert registry.main(["--root", str(root), "register", str(run), "--name", "evaluated"]) == 0
    assert (root / "evaluated" / "v1" / "model" / "weights").read_text() == "public weights"


# ---- 2. a malformed file of a run dir or registry entry is one error line naming it ----

def _version(root: Path, metrics: str, source: str = '{"optimized_metric": "val/acc"}') -> None:
    folder = root / "m" / "v1"
    (folder / "model").mkdir(parents=True)
    (folder / "metrics.json").write_text(metrics)
    (folder / "source.json").write_text(source)


MALFORMED_ENTRIES = [  # metrics.json, source.json, the file the line must name
    ('["val/acc", 1]', '{"optimized_metric": "val/acc"}', "metrics.json"),
    ("{not json", '{"optimized_metric": "val/acc"}', "metrics.json"),
    ('{"val/acc": 0.5}', "[1, 2]", "source.json"),
    ('{"val/acc": 0.5}', '{"optimized_metric": ["val/acc"]}', "source.json"),
]


@pytest.mark.parametrize("metrics,source,named,alias", [
    *((*entry, alias) for entry in MALFORMED_ENTRIES for alias in ("latest", "best")),
    ('{"val/acc": "high"}', '{"optimized_metric": "val/acc"}', "metrics.json", "best"),  # read to pick the best
])
def test_show_of_a_malformed_registry_entry_is_one_error_line(metrics, source, named, alias, tmp_path, capsys):
    _version(tmp_path / "registry", metrics, source)
    assert registry.main(["--root", str(tmp_path / "registry"), "show", f"m@{alias}"]) == 2
    assert named in _one_error_line(capsys)


def test_publish_of_an_entry_whose_source_is_no_mapping_uploads_the_version(tmp_path):
    """(the source run is looked for on the server only when source.json names one)"""
    from nlpexp.registry_mlflow import _training_run

    _version(tmp_path / "registry", "{}", "[1, 2]")
    assert _training_run(None, tmp_path / "registry" / "m" / "v1") == (None, None)


@pytest.mark.parametrize("config,named", [
    ("mode: eval\nmodel: [unclosed\n", "config.yaml"),
    ("- mode\n- eval\n", "config.yaml"),
    ('mode: eval\nmodel: "x"\n', "model"),
    ("mode: eval\nmodel: {name_or_path: 5}\n", "model.name_or_path"),
    ("mode: eval\noptimized_metric: [a, b]\nmodel: {name_or_path: 'bundled:x'}\n", "optimized_metric"),
])
def test_register_of_a_malformed_run_config_is_one_error_line(config, named, tmp_path, capsys):
    run = _eval_run(tmp_path / "run", "null")
    (run / "config.yaml").write_text(config)
    root = tmp_path / "registry"
    assert registry.main(["--root", str(root), "register", str(run), "--name", "m"]) == 2
    error = _one_error_line(capsys)
    assert "config.yaml" in error and named in error and _copied(root) == []


def test_register_of_a_run_whose_metrics_are_no_mapping_is_one_error_line(tmp_path, capsys):
    run = _model(tmp_path / "run" / "best_model", "w").parent
    (run / "metrics.json").write_text("[0.9]")
    assert registry.main(["--root", str(tmp_path / "registry"), "register", str(run), "--name", "m"]) == 2
    assert "metrics.json" in _one_error_line(capsys) and _copied(tmp_path / "registry") == []


# ---- 3. a data source names a Hub dataset, nothing else ----

def _compose(tmp_path, overrides):
    return compose([f"paths.output_dir={tmp_path}/run", f"paths.ledger_file={tmp_path}/ledger.jsonl",
                    "model=tiny_bert", *overrides])


@pytest.mark.parametrize("overrides,key", [
    (["+data.sources.evil.hub_id=/tmp/outside"], "data.sources.evil.hub_id"),
    (["+data.sources.evil.hub_id='~/outside'"], "data.sources.evil.hub_id"),
    (["+data.sources.evil.hub_id=../outside"], "data.sources.evil.hub_id"),
    (["+data.sources.evil.hub_id=owner/../outside"], "data.sources.evil.hub_id"),
    (["+data.sources.evil.hub_id=owner/na..me"], "data.sources.evil.hub_id"),
    (["+data.sources.evil.hub_id=a/b/c"], "data.sources.evil.hub_id"),
    (["+data.sources.evil.hub_id=text"], "data.sources.evil.hub_id"),  # datasets' builder: reads the current folder
    (["+data.sources.evil.hub_id=5"], "data.sources.evil.hub_id"),
    (["+data.sources.evil.hub_config=/tmp/x"], "data.sources.evil.hub_config"),
    (["+data.sources.evil.hub_splits=[1,2]"], "data.sources.evil.hub_splits"),
    (["+data.sources.evil.hub_splits.train=../x"], "data.sources.evil.hub_splits"),
    (["+data.sources.evil.hub_splits={1: train}"], "data.sources.evil.hub_splits"),
    (["+data.sources.evil.data_files=/tmp/x"], "data.sources.evil.data_files"),
    (["data.sources.snli.hub_id=/tmp/outside"], "data.sources.snli.hub_id"),
    (["task=sbert_nli", "+task.sts.sources.evil.hub_id=/tmp/outside"], "task.sts.sources.evil.hub_id"),
])
def test_a_data_source_is_a_hub_id_and_nothing_else(overrides, key, tmp_path):
    with pytest.raises(NlpexpError) as err:
        validate(_compose(tmp_path, overrides))
    message = str(err.value)
    assert "\n" not in message and message.startswith(key + " "), message


@pytest.mark.parametrize("data", sorted(p.stem for p in (CONFIG_DIR / "data").glob("*.yaml") if p.stem != "files"))
def test_every_bundled_data_source_is_allowed(data, tmp_path):
    task = {"dialogsum": ["task=summarization", "model=tiny_t5"], "ko_dialogsum": ["task=summarization",
                                                                                  "model=tiny_t5"]}
    validate(_compose(tmp_path, [*task.get(data, ["task=classification"]), f"data={data}",
                                 "+data.sources.extra.hub_id=owner-1/name_2.v3",
                                 "+data.sources.extra.hub_splits.validation=validation_matched",
                                 "+data.sources.none=null"]))


def test_a_hub_id_that_is_a_local_folder_is_not_read(tmp_path, monkeypatch):
    """datasets.load_dataset reads a local folder of that name (relative to the current folder) before the Hub."""
    folder = tmp_path / "owner" / "name"
    folder.mkdir(parents=True)
    (folder / "train.jsonl").write_text('{"text": "PLANTED", "label": 0}\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("nlpexp.data.readers.hub_reachable", lambda: True)
    with pytest.raises(NlpexpError, match="owner/name"):
        read_split(tmp_path / "mirror", "local-folder-test", "train", Source("owner/name"))


def test_an_mlflow_version_whose_source_is_another_host_gets_no_credentials(tmp_path, monkeypatch):
    """Whoever created a version in the registry chose its source, and MLflow sends the tracking credentials to
    any http source it downloads from. (An `mlflow server` refuses such a source unless told otherwise, so the
    registry here is a local store, which takes any.)"""
    from mlflow import MlflowClient

    from nlpexp.model import registry as model_registry
    from tests.test_config_is_data import Listener

    listener, store = Listener(), f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    client.create_registered_model("elsewhere")
    source = f"{listener.url}/mlflow-artifacts/artifacts/model"  # the path MLflow's http artifact store expects
    client.create_model_version("elsewhere", source=source)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "planted-user")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "planted-password-123")
    with pytest.raises(NlpexpError, match=rf"^registry:mlflow:elsewhere@v1: the version's source {re.escape(source)} "
                                          rf"is not on the tracking server"):
        model_registry.resolve("registry:mlflow:elsewhere@v1", tmp_path / "registry")
    assert listener.close() == b""


# ---- a sweep dir someone handed over: its study.json, links and ledger lines are data ----

def _handed_sweep(tmp_path, run_dirs: tuple = ()) -> Path:
    """A sweep dir as a sweep leaves it (optuna.db, study.json), with a complete trial per run dir (one without)."""
    import optuna

    from nlpexp.sweep.storage import open_storage
    from nlpexp.sweep.study import write_study_file

    sweep = tmp_path / "handed"
    sweep.mkdir(exist_ok=True)
    url = f"sqlite:///{sweep / 'optuna.db'}"
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # (its "a new study" line)
    try:
        study = optuna.create_study(study_name="s", storage=open_storage(url), direction="maximize")
    finally:
        optuna.logging.set_verbosity(verbosity)
    for run_dir in run_dirs or (None,):
        study.add_trial(optuna.trial.create_trial(params={"lr": 0.1}, distributions={
            "lr": optuna.distributions.FloatDistribution(0.01, 1.0)}, value=0.5,
            user_attrs={RUN_DIR: str(run_dir)} if run_dir else {}))
    write_study_file(sweep, "s", url)
    return sweep


def test_the_summary_of_a_handed_sweep_dir_reads_no_run_dir_outside_it(tmp_path):
    from nlpexp.sweep.__main__ import main

    inside, outside = tmp_path / "handed" / "0", tmp_path / "outside"
    for folder, host in ((inside, "inside-host"), (outside, "OUTSIDE-HOST-LEAK")):
        folder.mkdir(parents=True)
        (folder / "provenance.json").write_text(json.dumps({"host": host, "timing": "not nlpexp's"}))
    sweep = _handed_sweep(tmp_path, run_dirs=(inside, outside))
    assert main(["summary", str(sweep)]) == 0
    table = (sweep / "trials.csv").read_text()
    assert "inside-host" in table and "OUTSIDE-HOST-LEAK" not in table


def _summary_error(sweep: Path, caplog) -> str:
    """`python -m nlpexp.sweep summary <sweep>` refused: its one error line."""
    from nlpexp.sweep.__main__ import main

    caplog.clear()
    assert main(["summary", str(sweep)]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].startswith("error: "), errors
    return errors[0]


def _study_file_names(sweep: Path, url: str) -> None:
    (sweep / "study.json").write_text(json.dumps({"study_name": "s", "storage": url}))


def test_a_handed_sweep_dir_cannot_make_the_summary_connect_to_a_server(tmp_path, caplog, monkeypatch):
    """PGPASSWORD would go to the server its study.json names."""
    from tests.test_config_is_data import Listener

    listener, sweep = Listener(), _handed_sweep(tmp_path)
    monkeypatch.setenv("PGPASSWORD", "planted-pg-password-456")
    _study_file_names(sweep, f"postgresql+psycopg://victim@127.0.0.1:{listener.url.rsplit(':', 1)[1]}/db")
    assert "a server: the person gives a server" in _summary_error(sweep, caplog)
    assert listener.close() == b""


def test_a_handed_sweep_dir_cannot_make_the_summary_change_another_sqlite_file(tmp_path, caplog):
    import sqlite3

    victim, sweep = tmp_path / "victim.db", _handed_sweep(tmp_path)
    with sqlite3.connect(victim) as db:
        db.execute("create table precious (x)")
    _study_file_names(sweep, f"sqlite:///{victim}")
    assert str(victim) in _summary_error(sweep, caplog)
    with sqlite3.connect(victim) as db:
        assert [row[0] for row in db.execute("select name from sqlite_master")] == ["precious"]


@pytest.mark.parametrize("folder", ["plots", "study_hparams"])
def test_a_link_in_a_handed_sweep_dir_does_not_send_the_summary_elsewhere(folder, tmp_path, caplog):
    """plots/ -> elsewhere would be written into; study_hparams/ -> elsewhere would have its event files deleted."""

    sweep, outside = _handed_sweep(tmp_path), tmp_path / "outside"
    outside.mkdir()
    (outside / "events.out.tfevents.victim").write_text("kept")
    os.symlink(outside, sweep / folder)
    assert f"{sweep / folder} is a symlink" in _summary_error(sweep, caplog)
    assert sorted(p.name for p in outside.iterdir()) == ["events.out.tfevents.victim"]


def test_runs_over_a_ledger_line_with_odd_metric_values_is_no_traceback(tmp_path, capsys):
    from nlpexp import runs
    from nlpexp.io import append_to_ledger

    ledger = tmp_path / "ledger.jsonl"
    for run_id, value in (("a", 0.5), ("b", [1, 2]), ("c", "high"), ("d", True)):
        append_to_ledger(ledger, {"run_id": run_id, "status": "ok", "metrics": {"acc": value}})
    assert runs.main(["--ledger", str(ledger), "--sort", "acc", "--metrics", "acc"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["a", "b", "c", "d"] and "0.5000" in lines[1]
