"""The bad-input catalogue: every case ends in one NlpexpError line naming the problem and the fix,
before or without writing partial results."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys

import pytest

from nlpexp import NlpexpError
from nlpexp.config import PROJECT_ROOT, compose
from nlpexp.pipeline import objective, run
from tests import forkserver

SMOKE = ("task=sbert_nli", "model=tiny_bert", "debug=smoke", "logger=none")


def _rows(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def _bad_root(tmp_path, data_root, kind: str):
    """A copy of the fixture root (by symlinks) with one broken snli/test file."""
    root = tmp_path / "bad_data"
    root.mkdir()
    for entry in data_root.iterdir():
        if entry.name != "snli":
            (root / entry.name).symlink_to(entry)
    (root / "snli").mkdir()
    (root / "snli" / "validation.jsonl.gz").symlink_to(data_root / "snli" / "validation.jsonl.gz")
    test = root / "snli" / "test.jsonl.gz"
    if kind == "corrupt":
        _rows(test, [{"premise": "a b", "hypothesis": "c d", "label": "neutral"}] * 300)
        test.write_bytes(test.read_bytes()[:60])
    elif kind == "bad_json":
        test.write_bytes(gzip.compress(b'{"premise": "a", "hypothesis": "b", "label": "neutral"}\n{oops\n'))
    elif kind == "empty_texts":
        _rows(test, [{"premise": " ", "hypothesis": "", "label": "neutral"}] * 4)
    elif kind == "wrong_columns":
        _rows(test, [{"sentence_a": "a", "sentence_b": "b", "label": "neutral"}] * 4)
    elif kind in ("list_row", "null_row"):
        test.write_bytes(gzip.compress(b'{"premise": "a", "hypothesis": "b", "label": "neutral"}\n'
                                       + (b'["a", "b", "neutral"]\n' if kind == "list_row" else b"null\n")))
    elif kind == "mixed_labels":
        _rows(test, [{"premise": "a b", "hypothesis": "c d", "label": label} for label in (0, "neutral")])
    elif kind == "unknown_labels":
        _rows(test, [{"premise": "a b", "hypothesis": "c d", "label": "maybe"}] * 4)
    return root


# (case id, overrides, broken data kind or None, pattern the single error line must match)
CASES = [
    ("unknown-option", ["model=nope"], None, r"model=nope is not an option; options of model: .*bert, .*minilm"),
    ("unknown-task", ["task=nope"], None, r"task=nope is not an option; options of task: augsbert"),
    ("misspelled-key", ["trainer.batchsize=4"], None,
     r"trainer.batchsize is not a setting; did you mean trainer.batch_size\?"),
    ("misspelled-top-key", ["sed=1"], None, r"sed is not a setting; did you mean seed\?"),
    ("override-syntax", ["data.splits.train=["], None, r"no viable alternative"),
    ("batch-size-type", ["trainer.batch_size=abc"], None, r"trainer.batch_size must be a positive integer"),
    ("lr-type", ["optimizer.lr=abc"], None, r"optimizer.lr must be a positive number, got 'abc'"),
    ("lr-negative", ["optimizer.lr=-0.1"], None, r"optimizer.lr must be a positive number"),
    ("weight-decay-negative", ["optimizer.weight_decay=-1"], None, r"optimizer.weight_decay"),
    ("batch-size-zero", ["trainer.batch_size=0"], None, r"trainer.batch_size must be a positive integer"),
    ("accumulation-zero", ["trainer.gradient_accumulation_steps=0"], None, r"gradient_accumulation_steps"),
    ("precision", ["trainer.precision=fp8"], None, r"trainer.precision must be one of"),
    ("eval-every-zero", ["trainer.eval_every_steps=0"], None, r"trainer.eval_every_steps"),
    ("scheduler-name", ["scheduler.name=sawtooth"], None, r"scheduler.name must be one of"),
    ("warmup-ratio", ["scheduler.warmup_ratio=1.5"], None, r"scheduler.warmup_ratio must be a number in \[0, 1\)"),
    ("mode", ["mode=fly"], None, r"mode must be one of"),
    ("ratio-sum", ["data=imdb", "~data.splits", "+data.splits={all:[imdb/train]}",
                   "+data.split_ratios={train:0.5,test:0.1}"],
     None, r"split_ratios must be non-negative and sum to 1"),
    ("max-samples-zero", ["data.max_train_samples=0"], None, r"data.max_train_samples must be a positive integer"),
    ("unknown-labels-policy", ["data.unknown_labels=maybe"], None, r"data.unknown_labels must be one of error, drop"),
    ("split-entry", ["data.splits.train=[test]"], None, r"must be '<folder>/<split>'"),
    ("missing-split", ["data.splits.train=[snli/train]"], None,
     r"snli/train not found under .*snli/ has: test, validation"),
    ("missing-role", ["data.splits={train:[snli/test]}", "mode=eval", "data@task.sts=kornli"], None,
     r"has no 'validation' split|lacks column"),
    ("labels-outside-set", ["data.label_names=[yes,no,maybe]"], None, r"label\(s\) outside.*unknown_labels=drop"),
    ("missing-column-map", ["+data.columns.premise=sentence_a"], None, r"lacks column.*data.columns.premise=<column>"),
    ("corrupt-gzip", [], "corrupt", r"corrupt or truncated"),
    ("bad-json-line", [], "bad_json", r"line 2 is not valid JSON"),
    ("empty-texts", ["data=snli"], "empty_texts", r"every row has an empty text"),
    ("wrong-columns", [], "wrong_columns", r"file snli/test lacks column.*premise.*data.columns"),
    ("list-row", [], "list_row", r"test.jsonl.gz line 2 is a JSON list, not an object"),
    ("null-row", [], "null_row", r"test.jsonl.gz line 2 is a JSON null, not an object"),
    ("mixed-label-types", [], "mixed_labels", r"gz line 2: column 'label' holds a string .* number on line 1"),
    ("drop-leaves-no-row", ["data=snli", "data.unknown_labels=drop"], "unknown_labels",
     r"would drop every row.*data.label_names"),
    ("model-path", ["model.name_or_path=/no/such/model", "model.random_init=null"], None, r"no such folder"),
    # (model=bert itself becomes a tiny random BERT under debug=smoke, which works offline)
    ("hub-id-offline", ["model.name_or_path=bert-base-uncased", "model.random_init=null"], None,
     r"Hub is unreachable.*model=minilm"),
    ("bundled-unknown", ["model.name_or_path=bundled:nope", "model.random_init=null"], None,
     r"unknown bundled model 'nope'"),
    ("registry-alias", ["model.name_or_path=registry:nope@best", "model.random_init=null"], None,
     r"registry has no model 'nope'"),
    ("task-data-mismatch", ["data=stsb"], None, r"task=sbert_nli needs labelled data with data.label_names \(NLI data"),
    ("task-loss-mismatch", ["loss._target_=sentence_transformers.sentence_transformer.losses.CoSENTLoss"], None,
     r"task=sbert_nli cannot feed CoSENTLoss; use loss=softmax"),
    ("resume-not-a-checkpoint", ["trainer.resume=/tmp"], None, r"is not a complete nlpexp checkpoint"),
    ("resume-missing-path", ["trainer.resume=/no/checkpoint"], None, r"no checkpoint folder"),
    ("target-os-system", ["model._target_=os.system"], None, r"model._target_='os.system' is not allowed"),
    ("target-in-logger", ["+logger.evil._target_=builtins.exec"], None, r"logger.evil._target_='builtins.exec'"),
    ("summarization-encoder-only", ["task=summarization", "data=dialogsum"], None,
     r"model 'tiny_bert' is an encoder \(bert\) and cannot generate text; set model.build=encoder_decoder"),
    ("wandb-mode", ["logger=wandb", "logger.wandb.mode=sometimes"], None, r"logger.wandb.mode must be one of"),
]


@pytest.mark.parametrize("case_id,overrides,broken,pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_clear_error(case_id, overrides, broken, pattern, tmp_path, data_root, monkeypatch):
    if broken:
        monkeypatch.setenv("NLPEXP_DATA_DIR", str(_bad_root(tmp_path, data_root, broken)))
    run_dir, ledger = tmp_path / "run", tmp_path / "ledger.jsonl"
    with pytest.raises(NlpexpError) as err:
        run(compose([f"paths.output_dir={run_dir}", f"paths.ledger_file={ledger}", *SMOKE, *overrides]))
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    assert re.search(pattern, message), message
    assert not (run_dir / "metrics.json").exists()
    for line in ledger.read_text().splitlines() if ledger.exists() else []:
        record = json.loads(line)  # every ledger line stays whole
        assert record["status"] == "failed" and record["error"] == message


def test_missing_data_root(compose_run, monkeypatch, tmp_path):
    monkeypatch.setenv("NLPEXP_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(NlpexpError, match="data root .* does not exist and the Hub is unreachable: the root comes "
                                          "from NLPEXP_DATA_DIR"):
        run(compose_run(*SMOKE))


def test_optimized_metric_the_task_does_not_produce(compose_run):
    cfg = compose_run(*SMOKE, "optimized_metric=val/bleu")
    with pytest.raises(NlpexpError, match="optimized_metric 'val/bleu' is not among .*val/spearman_cosine"):
        objective(cfg, run(cfg))


def test_catalogue_is_large_enough():
    assert len(CASES) + 2 >= 45


def _run_cli(tmp_path, data_root, *args, **env_vars):
    env = {**os.environ, "NLPEXP_DATA_DIR": str(data_root), "HF_HUB_OFFLINE": "1", **env_vars}
    if "HYDRA_FULL_ERROR" not in env_vars:
        env.pop("HYDRA_FULL_ERROR", None)
    run_dir = [] if any(a.startswith("hydra.run.dir=") for a in args) else [f"hydra.run.dir={tmp_path}/D"]
    return forkserver.run([sys.executable, str(PROJECT_ROOT / "run.py"), *args, *run_dir,
                           f"hydra.sweep.dir={tmp_path}/S", f"paths.ledger_file={tmp_path}/ledger.jsonl"],
                          capture_output=True, text=True, env=env, timeout=120)


# Each ~3 s of imports: only what the command line itself decides. model=bert (a run-time error): test_cli.py.
@pytest.mark.parametrize("args,pattern", [
    (["model=nope"], r"model=nope is not an option; options of model: bart, bert"),
    (["model._target_=os.system"], r"model._target_='os.system' is not allowed"),
    (["model=tiny_bert", "trainer.max_steps=abc"], r"trainer.max_steps must be an integer >= -1, got 'abc'"),
    (["hydra.run.dir={file}"], r"hydra.run.dir: cannot use .*a_file: File exists"),
    (["-m", "hparams_search=sbert_nli", "hydra.sweeper.storage=notaurl"], r"hydra.sweeper.storage must be an SQL"),
    (["-m", "hparams_search=sbert_nli", "hydra.sweeper.n_trials=abc"], r"hydra.sweeper.n_trials=abc; Value 'abc'"),
], ids=["compose", "target", "job-setting", "run-dir-is-a-file", "sweep-storage", "sweep-compose"])
def test_cli_prints_a_single_error_line(args, pattern, tmp_path, data_root):
    (tmp_path / "a_file").write_text("")
    done = _run_cli(tmp_path, data_root, *(a.format(file=tmp_path / "a_file") for a in args))
    errors = [line for line in (done.stdout + done.stderr).splitlines() if "error" in line.lower()]
    assert done.returncode == 2 and len(errors) == 1, done.stderr[-1500:]
    assert re.search(pattern, errors[0]) and "Traceback" not in done.stderr, errors[0]
    assert not (tmp_path / "S" / "0").exists()  # no trial started


def test_hydra_full_error_shows_the_traceback(tmp_path, data_root):
    done = _run_cli(tmp_path, data_root, "model=tiny_bert", "trainer.max_steps=abc", HYDRA_FULL_ERROR="1")
    assert done.returncode != 0 and "Traceback" in done.stderr
    assert "nlpexp.NlpexpError: trainer.max_steps must be an integer >= -1" in done.stderr


def test_columns_come_from_every_row(tmp_path):
    from nlpexp.data.readers import read_split_file

    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b", "label": 1}\n{"label": 0, "text": "c", "note": "x"}\n')
    rows = read_split_file(path)
    assert rows.column_names == ["text", "label", "note"]
    assert rows["label"][:] == [None, 1, 0] and rows["note"][:] == [None, None, "x"]


@pytest.mark.parametrize("kind,pattern", [
    ("folder-as-ledger", r"^paths.ledger_file: cannot use .*: is a folder; name a file inside it"),
    ("file-as-cache", r"^paths.cache_dir: cannot use .*: is a file, not a folder"),
    ("run-dir-under-a-file", r"^paths.output_dir: cannot use .*: cannot be created: .* is a file"),
    ("ledger-under-a-file", r"^paths.ledger_file: cannot use .*: cannot be created: .* is a file"),
])
def test_paths_that_cannot_be_written_are_refused_before_the_run(kind, pattern, tmp_path):
    from nlpexp.schema import validate

    a_file = tmp_path / "a_file"
    a_file.write_text("")
    paths = {"paths.output_dir": tmp_path / "run", "paths.ledger_file": tmp_path / "ledger.jsonl",
             "paths.cache_dir": tmp_path / "cache"}
    key, value = {"folder-as-ledger": ("paths.ledger_file", tmp_path), "file-as-cache": ("paths.cache_dir", a_file),
                  "run-dir-under-a-file": ("paths.output_dir", a_file / "run"),
                  "ledger-under-a-file": ("paths.ledger_file", a_file / "l.jsonl")}[kind]
    paths[key] = value
    with pytest.raises(NlpexpError, match=pattern):
        validate(compose([*(f"{k}={v}" for k, v in paths.items()), *SMOKE]))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("content", ["{oops", "[1, 2]", '{"storage": "sqlite:///x.db"}', ""])
def test_a_bad_study_file_is_one_line(content, tmp_path):
    from nlpexp.sweep.study import locate

    (tmp_path / "study.json").write_text(content)
    with pytest.raises(NlpexpError, match=r"study.json is not a study file .*rewrite it or give the storage URL"):
        locate(str(tmp_path))


def test_library_errors_become_one_line_naming_the_key(tmp_path):
    import errno

    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from nlpexp.boundary import error_line, exit_code

    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "metrics.json"))
    assert error_line(full, {"paths.output_dir": str(tmp_path / "run")}) == \
        f"paths.output_dir: cannot use {tmp_path}/run/metrics.json: No space left on device"
    with pytest.raises(OmegaConfBaseException) as unset:
        OmegaConf.create({"a": {"b": "${oc.env:NLPEXP_UNSET_VARIABLE}"}}).a.b  # noqa: B018
    assert error_line(unset.value) == "a.b: Environment variable 'NLPEXP_UNSET_VARIABLE' not found"
    assert error_line(TypeError("AdamW.__init__() got an unexpected keyword argument 'foo'\nmore")) == \
        "TypeError: AdamW.__init__() got an unexpected keyword argument 'foo'"
    assert [exit_code(e) for e in (full, unset.value, TypeError(), NlpexpError(), KeyError("bug"))] == [2, 2, 2, 2, 1]
    assert error_line(KeyError("bug")).startswith("unexpected KeyError") and "HYDRA_FULL_ERROR=1" in error_line(
        KeyError("bug"))


def test_a_missing_model_is_refused_before_transformers_is_imported(tmp_path):
    """The model's files are checked first: a typo in model.name_or_path costs a second, not the library imports."""
    code = ("import sys\nfrom nlpexp.config import compose\nfrom nlpexp import NlpexpError\n"
            "from nlpexp.pipeline import run\n"
            f"cfg = compose(['model.name_or_path=/no/such/model', 'paths.output_dir={tmp_path}/run', "
            f"'paths.ledger_file={tmp_path}/ledger.jsonl', 'logger=none'])\n"
            "try:\n    run(cfg)\nexcept NlpexpError as err:\n    print('refused:', err)\n"
            "print('transformers imported:', 'transformers' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "refused: model 'minilm': no such folder /no/such/model" in done.stdout, done.stderr[-2000:]
    assert "transformers imported: False" in done.stdout


def test_checking_a_config_imports_no_training_library(tmp_path):
    """Validation reads each named task's and logger's keys from its constructor, importing its module; that must
    not import transformers, torch or sentence-transformers (3 s), or every error in a config, and every sweep's
    gate, would pay for them. Every task's config is checked, its class read (its module imported)."""
    configs = [["logger=tensorboard"], ["logger=[tensorboard,wandb,mlflow]"], ["task=sbert_nli"], ["task=embedding"],
               ["task=augsbert"], ["task=tsdae"], ["task=classification", "data=imdb"],
               ["task=summarization", "model=tiny_bart", "data=dialogsum"]]
    code = ("import sys\nfrom nlpexp.config import compose\nfrom nlpexp.schema import validate\n"
            f"for overrides in {configs!r}:\n"
            f"    validate(compose(['paths.output_dir={tmp_path}/run', *overrides]))\n"
            "print('imported:', sorted(m for m in ('transformers', 'torch', 'sentence_transformers') "
            "if m in sys.modules))\n"
            "print('tasks read:', sorted(m for m in sys.modules if m.startswith('nlpexp.task.')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "imported: []" in done.stdout, done.stdout[-1000:] + done.stderr[-2000:]
    for module in ("sbert_nli", "embedding", "augsbert.task", "tsdae", "classification", "summarization.task"):
        assert f"'nlpexp.task.{module}'" in done.stdout, done.stdout[-1000:]
