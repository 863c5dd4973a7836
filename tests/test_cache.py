"""Tokenised datasets cached on disk (nlpexp.data.cache): the same map is read back, any other input misses."""

from __future__ import annotations

import logging

import pytest

from nlpexp.data.cache import cached_map

CALLS: list[int] = []  # batch sizes tokenize() was called with


def tokenize(batch: dict, tokenizer, max_length: int) -> dict:
    CALLS.append(len(batch["text"]))
    return tokenizer(batch["text"], truncation=True, max_length=max_length)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from nlpexp.model.weights import bundled_path

    return AutoTokenizer.from_pretrained(bundled_path("all-MiniLM-L6-v2"))


def rows(*texts: str):
    import datasets

    texts = texts or ("a first review", "and a second, longer review of the same film")
    return datasets.Dataset.from_dict({"text": list(texts), "label": [i % 2 for i in range(len(texts))]})


def tokenized(data, tokenizer, cache_dir, max_length: int = 8):
    return cached_map(data, tokenize, tokenizer, cache_dir=cache_dir, label="train",
                      settings={"max_length": max_length}, remove_columns=["text"])


def test_the_same_map_is_read_back_without_running_again(tokenizer, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="nlpexp.data.cache")
    first = tokenized(rows(), tokenizer, tmp_path)
    calls = len(CALLS)
    assert calls > 0 and "tokenised train and cached it in" in caplog.text
    caplog.clear()
    again = tokenized(rows(), tokenizer, tmp_path)  # a new dataset object with the same rows, as in a new trial
    assert len(CALLS) == calls
    assert f"tokenised train: reused cache {tmp_path}" in caplog.text
    assert again["input_ids"] == first["input_ids"] and again.column_names == ["label", "input_ids",
                                                                               "token_type_ids", "attention_mask"]
    assert len(list(tmp_path.glob("*.arrow"))) == 1


def test_other_rows_or_max_length_give_other_files(tokenizer, tmp_path):
    short = tokenized(rows(), tokenizer, tmp_path, max_length=4)
    long = tokenized(rows(), tokenizer, tmp_path, max_length=16)
    tokenized(rows("other", "texts"), tokenizer, tmp_path, max_length=16)
    assert len(list(tmp_path.glob("*.arrow"))) == 3
    assert len(short[1]["input_ids"]) == 4 < len(long[1]["input_ids"])


def test_a_tokenizer_is_known_by_its_files_not_its_folder(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    for name in ("copy", "other_copy"):
        tokenizer.save_pretrained(tmp_path / name)
    grown = AutoTokenizer.from_pretrained(tmp_path / "copy")
    grown.add_tokens(["filmreview"])
    grown.save_pretrained(tmp_path / "grown")
    for name in ("copy", "other_copy", "grown"):
        tokenized(rows(), AutoTokenizer.from_pretrained(tmp_path / name), tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.arrow"))) == 2  # the copies share one file


def test_without_a_cache_dir_nothing_is_written(tokenizer, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mapped = tokenized(rows(), tokenizer, None)
    assert mapped.cache_files == [] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_entry_is_rebuilt_with_a_notice(tokenizer, tmp_path, caplog, damage):
    expected = [list(ids) for ids in tokenized(rows(), tokenizer, tmp_path)["input_ids"]]  # read before the damage
    (entry,) = tmp_path.glob("*.arrow")
    data = entry.read_bytes()
    entry.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x00not arrow" * 50, "empty": b""}[damage])
    caplog.set_level(logging.WARNING, logger="nlpexp.data.cache")
    again = tokenized(rows(), tokenizer, tmp_path)
    assert "is unreadable" in caplog.text and "rebuilding it" in caplog.text
    assert [list(ids) for ids in again["input_ids"]] == expected
    caplog.clear()
    assert [list(ids) for ids in tokenized(rows(), tokenizer, tmp_path)["input_ids"]] == expected  # whole again
    assert "unreadable" not in caplog.text


def test_datasets_fingerprint_still_tells_rows_apart():
    """nlpexp.adapters: datasets' private `_fingerprint` the cache key reads; fails when datasets changes it."""
    from nlpexp.adapters import fingerprint

    first, same, other = rows("a", "b"), rows("a", "b"), rows("a", "c")
    assert isinstance(fingerprint(first), str) and fingerprint(first) == fingerprint(same) != fingerprint(other)
    assert fingerprint(first.map(lambda row: {"n": len(row["text"])})) != fingerprint(first)
