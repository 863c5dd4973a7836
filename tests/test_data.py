"""The data layer: local mirror, column and label mapping, limits, ratio splits, and its errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from nlpexp import NlpexpError
from nlpexp.data import DataSpec

NLI = ("premise", "hypothesis", "label")
LABELS = ["entailment", "neutral", "contradiction"]


def spec(root, **kw) -> DataSpec:
    args = dict(name="snli", root=str(root), sources={"snli": {"hub_id": "stanfordnlp/snli"}},
                splits={"train": ["snli/test"], "validation": ["snli/validation"]}, label_names=LABELS)
    args.update(kw)
    return DataSpec(**args)


def write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def test_loads_and_maps_labels_to_ids(data_root):
    rows = spec(data_root).load("train", NLI)
    assert len(rows) == 48 and set(rows["label"]) == {0, 1, 2}
    assert rows.column_names == list(NLI)


def test_concatenates_files_in_order(data_root):
    both = spec(data_root, sources={"snli": {}, "mnli": {}},
                splits={"train": ["snli/test", "mnli/validation"]}).load("train", NLI)
    assert len(both) == 96


def test_limits_are_first_rows_unless_shuffled(data_root):
    full = spec(data_root).load("train", NLI)
    first = spec(data_root, max_train_samples=5).load("train", NLI)
    assert first["premise"] == full["premise"][:5]
    shuffled = spec(data_root, max_train_samples=5, shuffle=True, seed=1).load("train", NLI)
    assert shuffled["premise"] != first["premise"]
    again = spec(data_root, max_train_samples=5, shuffle=True, seed=1).load("train", NLI)
    assert shuffled["premise"] == again["premise"]


def test_a_limit_reads_only_the_files_holding_its_rows(tmp_path):
    from nlpexp import data as data_spec

    row = {"premise": "p", "hypothesis": "h", "label": "neutral"}
    write(tmp_path / "a" / "train.jsonl.gz", [row] * 2 + [{**row, "premise": ""}] * 2)
    write(tmp_path / "b" / "train.jsonl.gz", [row] * 4)
    both = {"train": ["a/train", "b/train"]}
    with data_spec.recording_reads() as files_read:
        assert len(spec(tmp_path, sources={"a": {}, "b": {}}, splits=both, max_train_samples=2).load("train", NLI)) == 2
    assert [Path(f).parent.name for f in files_read] == ["a"]
    # a's 4 rows would do, but 2 of them are empty: b is read too
    with data_spec.recording_reads() as files_read:
        limited = spec(tmp_path, sources={"a": {}, "b": {}}, splits=both, max_train_samples=4)
        assert len(limited.load("train", NLI, text_columns=NLI[:2])) == 4
    assert sorted(Path(f).parent.name for f in files_read) == ["a", "b"]


def test_reads_are_recorded_per_run_not_across_runs(tmp_path):
    """A run's provenance lists the files that run read: nothing leaks in from an earlier run or outside one."""
    from nlpexp import data as data_spec

    write(tmp_path / "a" / "train.jsonl.gz", [{"premise": "p", "hypothesis": "h", "label": "neutral"}] * 2)
    with data_spec.recording_reads() as first:
        spec(tmp_path, sources={"a": {}}, splits={"train": ["a/train"]}).load("train", NLI)
    spec(tmp_path, sources={"a": {}}, splits={"train": ["a/train"]}).load("train", NLI)  # outside any run
    with data_spec.recording_reads() as second:
        pass
    assert [Path(f).parent.name for f in first] == ["a"] and second == set()


def test_missing_split_lists_the_roles_that_exist(data_root):
    with pytest.raises(NlpexpError, match="has no 'test' split; it has: train, validation"):
        spec(data_root).load("test", NLI)


def test_missing_file_names_both_places_and_present_splits(data_root):
    with pytest.raises(NlpexpError) as err:
        spec(data_root, splits={"train": ["snli/train"]}).load("train", NLI)
    message = str(err.value)
    assert "snli/train" in message and "stanfordnlp/snli" in message and "test, validation" in message


def test_missing_data_root(tmp_path):
    with pytest.raises(NlpexpError, match="NLPEXP_DATA_DIR"):
        spec(tmp_path / "nowhere").load("train", NLI)


def test_column_mapping_and_missing_columns(tmp_path):
    write(tmp_path / "x" / "train.jsonl.gz", [{"s1": "a b", "s2": "c d", "y": "neutral"}] * 3)
    kw = dict(sources={"x": {}}, splits={"train": ["x/train"]})
    with pytest.raises(NlpexpError, match=r"data.columns.premise=<column>"):
        spec(tmp_path, **kw).load("train", NLI)
    rows = spec(tmp_path, columns={"premise": "s1", "hypothesis": "s2", "label": "y"}, **kw).load("train", NLI)
    assert rows[0] == {"premise": "a b", "hypothesis": "c d", "label": 1}


def test_unknown_labels_error_or_drop(tmp_path):
    write(tmp_path / "x" / "train.jsonl.gz", [{"premise": "a", "hypothesis": "b", "label": "maybe"},
                                              {"premise": "a", "hypothesis": "b", "label": "neutral"}])
    kw = dict(sources={"x": {}}, splits={"train": ["x/train"]})
    with pytest.raises(NlpexpError, match="unknown_labels=drop"):
        spec(tmp_path, **kw).load("train", NLI)
    assert len(spec(tmp_path, unknown_labels="drop", **kw).load("train", NLI)) == 1


def test_empty_texts_are_dropped(data_root):
    nsmc = DataSpec(name="nsmc", root=str(data_root), sources={"nsmc": {}}, splits={"train": ["nsmc/train"]},
                    label_names=["neg", "pos"])
    rows = nsmc.load("train", ("text", "label"), text_columns=("text",))
    assert len(rows) == 39 and all(rows["text"])


def test_corrupt_gzip_is_one_clear_error(tmp_path):
    path = tmp_path / "x" / "train.jsonl.gz"
    write(path, [{"premise": "a", "hypothesis": "b", "label": "neutral"}] * 200)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(NlpexpError, match="corrupt or truncated"):
        spec(tmp_path, sources={"x": {}}, splits={"train": ["x/train"]}).load("train", NLI)


def test_other_formats(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "train.tsv").write_text("premise\thypothesis\tlabel\na\tb\tneutral\n")
    (tmp_path / "x" / "validation.csv").write_text("premise,hypothesis,label\na,b,contradiction\n")
    s = spec(tmp_path, sources={"x": {}}, splits={"train": ["x/train"], "validation": ["x/validation"]})
    assert s.load("train", NLI)["label"] == [1] and s.load("validation", NLI)["label"] == [2]


def test_ratio_split_is_seeded_and_complete(data_root):
    kw = dict(name="imdb", root=str(data_root), sources={"imdb": {}}, splits={"all": ["imdb/train", "imdb/test"]},
              label_names=["neg", "pos"], split_ratios={"train": 0.8, "validation": 0.1, "test": 0.1})
    parts = {r: DataSpec(**kw).load(r, ("text", "label")) for r in ("train", "validation", "test")}
    assert [len(p) for p in parts.values()] == [64, 8, 8]
    again = DataSpec(**kw).load("test", ("text", "label"))
    assert again["text"] == parts["test"]["text"]


@pytest.mark.parametrize("bad", [{"train": 0.8, "test": 0.1}, {"train": 1.2, "test": -0.2}])
def test_ratio_split_must_sum_to_one(data_root, bad):
    with pytest.raises(NlpexpError, match="sum to 1"):
        DataSpec(name="imdb", root=str(data_root), sources={"imdb": {}}, splits={"all": ["imdb/train"]},
                 split_ratios=bad)


def test_bad_split_entry(data_root):
    with pytest.raises(NlpexpError, match="<folder>/<split>"):
        spec(data_root, splits={"train": ["train"]})


def test_ratio_roles_beside_roles_with_their_own_files(data_root):
    kw = dict(name="imdb", root=str(data_root), sources={"imdb": {}}, label_names=["neg", "pos"],
              splits={"all": ["imdb/train"], "test": ["imdb/test"]}, split_ratios={"train": 0.9, "validation": 0.1})
    data = DataSpec(**kw)
    assert data.roles == ["train", "validation", "test"]
    parts = {r: data.load(r, ("text", "label")) for r in data.roles}
    assert [len(p) for p in parts.values()] == [36, 4, 40]
    whole = DataSpec(**{**kw, "splits": {"train": ["imdb/train"]}, "split_ratios": None}).load("train", ("text",))
    assert sorted([*parts["train"]["text"], *parts["validation"]["text"]]) == sorted(whole["text"])


def test_a_role_cannot_have_files_and_a_ratio(data_root):
    with pytest.raises(NlpexpError, match=r"\['test'\] have files in data.splits and a share"):
        DataSpec(name="imdb", root=str(data_root), sources={"imdb": {}},
                 splits={"all": ["imdb/train"], "test": ["imdb/test"]},
                 split_ratios={"train": 0.8, "validation": 0.1, "test": 0.1})


@pytest.mark.parametrize("rows", [7, 10, 13])
def test_ratio_parts_cover_every_row_once(tmp_path, rows):
    write(tmp_path / "x" / "train.jsonl.gz", [{"text": f"row {i}"} for i in range(rows)])
    kw = dict(name="x", root=str(tmp_path), sources={"x": {}}, splits={"all": ["x/train"]},
              split_ratios={"train": 0.8, "validation": 0.1, "test": 0.1})
    texts = [t for role in ("train", "validation", "test") for t in DataSpec(**kw).load(role, ("text",))["text"]]
    assert sorted(texts) == sorted(f"row {i}" for i in range(rows))


def test_an_optional_role_without_files_is_skipped_with_one_notice(data_root, caplog):
    """stsb/korsts declare a test role their mirror holds out: offline, it is skipped (one info line), not an error."""
    import logging

    held_out = spec(data_root, splits={"train": ["snli/test"], "test": ["snli/held_out"]}, optional_roles=["test"])
    with caplog.at_level(logging.INFO, logger="nlpexp"):
        assert held_out.roles == ["train"] and not held_out.has("test") and not held_out.has("test")
    notices = [r.getMessage() for r in caplog.records if "held_out" in r.getMessage()]
    assert len(notices) == 1 and "no test split here" in notices[0] and "unreachable" in notices[0]
    present = spec(data_root, splits={"train": ["snli/test"], "test": ["snli/validation"]}, optional_roles=["test"])
    assert present.has("test") and len(present.load("test", NLI)) == 24
    required = spec(data_root, splits={"train": ["snli/test"], "test": ["snli/held_out"]})
    with pytest.raises(NlpexpError, match="split 'snli/held_out' not found"):
        required.load("test", NLI)


def test_the_sts_configs_declare_their_held_out_test_split(compose_run):
    from nlpexp.config import instantiate

    for name in ("stsb", "korsts"):
        sts = instantiate(compose_run(f"data={name}").data)
        assert sts.splits["test"] == [f"{name}/test"] and not sts.has("test")  # the fixture root has no test file
        assert sts.has("validation")
