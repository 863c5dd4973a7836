"""The bad-input catalogue: every case ends in one NlpexpError line naming the problem and the fix,
before or without writing partial results."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import pytest

from nlpexp.config import PROJECT_ROOT, compose
from nlpexp.errors import NlpexpError
from nlpexp.pipeline import objective, run

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
    return root


# (case id, overrides, broken data kind or None, pattern the single error line must match)
CASES = [
    ("unknown-option", ["model=nope"], None, r"model/nope.*Available options in 'model': .*bert, .*minilm"),
    ("unknown-task", ["task=nope"], None, r"Available options in 'task'"),
    ("misspelled-key", ["trainer.batchsize=4"], None, r"batchsize.*Did you mean.*batch_size"),
    ("misspelled-top-key", ["sed=1"], None, r"Could not override 'sed'"),
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
    ("warmup-ratio", ["scheduler.warmup_ratio=1.5"], None, r"scheduler.warmup_ratio must be in \[0, 1\)"),
    ("mode", ["mode=fly"], None, r"mode must be one of"),
    ("ratio-sum", ["data=imdb", "~data.splits", "+data.splits={all:[imdb/train]}",
                   "+data.split_ratios={train:0.5,test:0.1}"],
     None, r"split_ratios must be non-negative and sum to 1"),
    ("max-samples-zero", ["data.max_train_samples=0"], None, r"data.max_train_samples must be a positive integer"),
    ("unknown-labels-policy", ["data.unknown_labels=maybe"], None, r"data.unknown_labels must be 'error' or 'drop'"),
    ("split-entry", ["data.splits.train=[test]"], None, r"must be '<folder>/<split>'"),
    ("missing-split", ["data.splits.train=[snli/train]"], None,
     r"neither .*snli/train.*present in .*: test, validation"),
    ("missing-role", ["data.splits={train:[snli/test]}", "mode=eval", "data@task.sts=kornli"], None,
     r"has no 'validation' split|lacks column"),
    ("labels-outside-set", ["data.label_names=[yes,no,maybe]"], None, r"label\(s\) outside.*unknown_labels=drop"),
    ("missing-column-map", ["+data.columns.premise=sentence_a"], None, r"lacks column.*data.columns.premise=<column>"),
    ("corrupt-gzip", [], "corrupt", r"corrupt or truncated"),
    ("bad-json-line", [], "bad_json", r"line 2 is not valid JSON"),
    ("empty-texts", ["data=snli"], "empty_texts", r"every row has an empty text"),
    ("wrong-columns", [], "wrong_columns", r"file snli/test lacks column.*premise.*data.columns"),
    ("model-path", ["model.name_or_path=/no/such/model", "model.random_init=null"], None, r"no such folder"),
    # (model=bert itself becomes a tiny random BERT under debug=smoke, which works offline)
    ("hub-id-offline", ["model.name_or_path=bert-base-uncased", "model.random_init=null"], None,
     r"Hub is unreachable.*model=minilm"),
    ("bundled-unknown", ["model.name_or_path=bundled:nope", "model.random_init=null"], None,
     r"unknown bundled model 'nope'"),
    ("registry-alias", ["model.name_or_path=registry:nope@best", "model.random_init=null"], None,
     r"registry has no model 'nope'"),
    ("task-data-mismatch", ["data=stsb"], None, r"task=sbert_nli needs labelled NLI data"),
    ("task-loss-mismatch", ["loss._target_=sentence_transformers.sentence_transformer.losses.CoSENTLoss"], None,
     r"trains with loss=softmax"),
    ("resume-without-checkpoint", ["trainer.resume=true"], None, r"holds no checkpoint"),
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
    assert __import__("re").search(pattern, message), message
    assert not (run_dir / "metrics.json").exists()
    for line in ledger.read_text().splitlines() if ledger.exists() else []:
        record = json.loads(line)  # every ledger line stays whole
        assert record["status"] == "failed" and record["error"] == message


def test_missing_data_root(compose_run, monkeypatch, tmp_path):
    monkeypatch.setenv("NLPEXP_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(NlpexpError, match="data root .* does not exist; set NLPEXP_DATA_DIR"):
        run(compose_run(*SMOKE))


def test_optimized_metric_the_task_does_not_produce(compose_run):
    cfg = compose_run(*SMOKE, "optimized_metric=val/bleu")
    with pytest.raises(NlpexpError, match="optimized_metric 'val/bleu' is not among .*val/spearman_cosine"):
        objective(cfg, run(cfg))


def test_catalogue_is_large_enough():
    assert len(CASES) + 2 >= 30


# model=bert (an error raised at run time) is tested in test_cli.py
@pytest.mark.parametrize("args", [["model=nope"], ["model._target_=os.system"]], ids=["compose", "target"])
def test_cli_prints_a_single_error_line(args, tmp_path, data_root):
    env = {**os.environ, "NLPEXP_DATA_DIR": str(data_root), "HF_HUB_OFFLINE": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    done = subprocess.run([sys.executable, str(PROJECT_ROOT / "run.py"), *args, f"hydra.run.dir={tmp_path}/D",
                           f"paths.ledger_file={tmp_path}/ledger.jsonl"], capture_output=True, text=True,
                          env=env, timeout=120)
    errors = [line for line in (done.stdout + done.stderr).splitlines() if "error" in line.lower()]
    assert done.returncode == 2 and len(errors) == 1, done.stderr[-1500:]
    assert "Traceback" not in done.stderr
