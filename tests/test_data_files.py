"""Your own data in one line (docs/data.md): `data=files data.train=<file> data.validation=<file>`, CSV, TSV, JSONL
and parquet, columns mapped by data.columns.*, for every task the recipes name; each recipe runs as written."""

from __future__ import annotations

import csv
import json
import random
import sys
from pathlib import Path

import pytest

from nlpexp import NlpexpError
from nlpexp.config import PROJECT_ROOT, instantiate
from nlpexp.pipeline import run
from tests import forkserver
from tests.fixtures import _sentence, nli_rows, sts_rows

FAST = ("debug=smoke", "logger=none", "trainer.evaluate_start=false")


def _write(path: Path, rows: list[dict]) -> Path:
    """rows as a CSV, TSV, JSONL or parquet file, by the path's suffix."""
    if path.suffix in (".csv", ".tsv"):
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t" if path.suffix == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".parquet":
        import pandas as pd

        pd.DataFrame(rows).to_parquet(path)
    else:
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _renamed(rows: list[dict], names: dict[str, str]) -> list[dict]:
    return [{names.get(k, k): v for k, v in row.items()} for row in rows]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_each_file_type_is_read_with_its_columns_mapped(suffix, compose_run, tmp_path):
    rows = [{"review": f"{_sentence(random.Random(i))} {i}", "stars": ["neg", "pos"][i % 2]} for i in range(10)]
    train = _write(tmp_path / f"train{suffix}", rows)
    cfg = compose_run("task=classification", "data=files", f"data.train={train}", "data.columns.text=review",
                      "data.columns.label=stars", "data.label_names=[neg,pos]")
    data = instantiate(cfg.data)
    assert data.roles == ["train"]
    loaded = data.load("train", ("text", "label"), ("text",))
    assert loaded["text"] == [r["review"] for r in rows]
    assert loaded["label"] == [i % 2 for i in range(10)]  # the names, encoded by data.label_names


def test_a_file_replaces_one_role_of_a_dataset(compose_run, tmp_path):
    test = _write(tmp_path / "mine.jsonl", [{"dialogue": "#Person1#: hi", "summary": "a greeting"}] * 3)
    cfg = compose_run("task=summarization", "data=dialogsum", f"data.test={test}")
    data = instantiate(cfg.data)
    assert data.load("test", ("dialogue", "summary")).num_rows == 3
    assert data.load("validation", ("dialogue", "summary")).num_rows == 24  # the dataset's own


@pytest.mark.parametrize("bad, message", [
    ("missing.csv", r"data.train=.*missing.csv: no such file"),
    ("notes.txt", r"data.train=.*notes.txt: not a file type nlpexp reads; use one of .jsonl.gz, .jsonl, .csv"),
])
def test_a_bad_file_is_one_line_naming_the_setting(bad, message, compose_run, tmp_path):
    from nlpexp.schema import validate

    (tmp_path / "notes.txt").write_text("x\n")
    with pytest.raises(NlpexpError, match=message):
        validate(compose_run("data=files", f"data.train={tmp_path / bad}", "data.label_names=[a,b,c]"))


def _nli(tmp_path: Path, suffix: str, n: int, name: str) -> Path:
    rows = _renamed(nli_rows(random.Random(n), n), {"premise": "sent_a", "hypothesis": "sent_b", "label": "gold"})
    return _write(tmp_path / f"{name}{suffix}", rows)


# One recipe per task (docs/data.md): the overrides after `python run.py`, with {tmp} the folder of the files.
RECIPES = {
    "sbert_nli": ["task=sbert_nli", "data=files", "data.train={tmp}/nli.csv", "data.validation={tmp}/nli_dev.jsonl",
                  "data.columns.premise=sent_a", "data.columns.hypothesis=sent_b", "data.columns.label=gold",
                  "data.label_names=[entailment,neutral,contradiction]"],
    "embedding": ["task=embedding", "loss=cosent", "data=files", "data.train={tmp}/pairs.tsv",
                  "data@task.sts=files", "task.sts.validation={tmp}/pairs_dev.parquet"],
    "embedding_nli": ["task=embedding", "data=files", "data.train={tmp}/nli.csv", "data.columns.premise=sent_a",
                      "data.columns.hypothesis=sent_b", "data.columns.label=gold",
                      "data.label_names=[entailment,neutral,contradiction]"],
    "classification": ["task=classification", "data=files", "data.train={tmp}/reviews.csv",
                       "data.validation={tmp}/reviews_dev.csv", "data.test={tmp}/reviews_test.jsonl",
                       "data.columns.text=review", "data.columns.label=sentiment", "data.label_names=[neg,pos]"],
    "summarization": ["task=summarization", "model=tiny_bert2bert", "data=files", "data.train={tmp}/dialogues.jsonl",
                      "data.validation={tmp}/dialogues_dev.jsonl"],
}


def _recipe_files(tmp: Path) -> None:
    rng = random.Random(0)
    _nli(tmp, ".csv", 48, "nli")
    _nli(tmp, ".jsonl", 12, "nli_dev")
    _write(tmp / "pairs.tsv", sts_rows(rng, 48))
    _write(tmp / "pairs_dev.parquet", sts_rows(rng, 16))
    for name, n in (("reviews", 48), ("reviews_dev", 12)):
        _write(tmp / f"{name}.csv", [{"review": _sentence(rng), "sentiment": ["neg", "pos"][i % 2]} for i in range(n)])
    _write(tmp / "reviews_test.jsonl", [{"review": _sentence(rng), "sentiment": "pos"} for _ in range(8)])
    for name, n in (("dialogues", 32), ("dialogues_dev", 8)):
        _write(tmp / f"{name}.jsonl", [{"dialogue": f"#Person1#: {_sentence(rng)}\n#Person2#: {_sentence(rng)}",
                                        "summary": _sentence(rng)} for _ in range(n)])


@pytest.mark.parametrize("task", sorted(RECIPES))
def test_each_task_trains_on_your_files_in_one_line(task, compose_run, tmp_path):
    _recipe_files(tmp_path)
    overrides = [o.format(tmp=tmp_path) for o in RECIPES[task]]
    model = [] if any(o.startswith("model=") for o in overrides) else ["model=tiny_bert"]
    cfg = compose_run(*overrides, *model, *FAST)
    metrics = run(cfg)
    assert cfg.optimized_metric in metrics
    files = json.loads((tmp_path / "run" / "provenance.json").read_text())["data_files"]
    assert {Path(f).name for f in files} >= {Path(o.split("=", 1)[1]).name for o in overrides
                                             if o.split("=", 1)[0].endswith(("train", "validation"))}


def test_the_recipe_is_one_command_line(tmp_path):
    """`python run.py <recipe>` as a user types it, files relative to the directory it runs in."""
    _recipe_files(tmp_path)
    recipe = [o.replace("{tmp}/", "") for o in RECIPES["classification"]]
    done = forkserver.run([sys.executable, str(PROJECT_ROOT / "run.py"), *recipe, "model=tiny_bert", *FAST,
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "test/accuracy" in json.loads((tmp_path / "run" / "metrics.json").read_text())
