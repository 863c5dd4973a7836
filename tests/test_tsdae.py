"""Task `tsdae` end to end on a tiny random model: CLS pooling, the starting model's scores, the corpus."""

from __future__ import annotations

import gzip
import json

import pytest
from sentence_transformers import SentenceTransformer

from nlpexp import NlpexpError
from nlpexp.pipeline import build_task, run

SMOKE = ("task=tsdae", "model=tiny_bert", "debug=smoke", "logger=none")


def test_tsdae_trains_with_cls_pooling_and_reports_its_start(compose_run, data_root, tmp_path):
    metrics = run(compose_run(*SMOKE))
    for key in ("val/spearman_cosine", "start/spearman_cosine", "start/pearson_manhattan"):
        assert key in metrics
    assert metrics["val/spearman_cosine"] != metrics["start/spearman_cosine"]
    rows = [json.loads(line) for name in ("snli/test", "mnli/validation")
            for line in gzip.open(data_root / f"{name}.jsonl.gz", "rt")][:64]
    assert metrics["train/examples"] == len({text for r in rows for text in (r["premise"], r["hypothesis"])})
    model = SentenceTransformer(str(tmp_path / "run" / "best_model"), local_files_only=True)
    assert model[1].pooling_mode == "cls"


def test_tsdae_corpus_from_any_text_column(compose_run):
    task = build_task(compose_run(*SMOKE, "data=imdb", "task.text_columns=[text]", "task.deletion_ratio=0.3"))
    task.setup()
    originals = task.train_set["original"]
    assert originals and len(set(originals)) == len(originals)
    assert all(len(d.split()) <= len(o.split()) for d, o in zip(task.train_set["damaged"], originals, strict=True))


@pytest.mark.parametrize("override,message", [("loss=mnrl", "loss=denoising"), ("task.deletion_ratio=1.0", "[0, 1)"),
                                              ("task.text_columns=[body]", "data.columns.body")])
def test_tsdae_errors(compose_run, override, message):
    with pytest.raises(NlpexpError, match=message.replace("[", r"\[").replace(")", r"\)").replace("(", r"\(")):
        run(compose_run(*SMOKE, override))
