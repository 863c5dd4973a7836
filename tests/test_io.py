"""Atomic writers: whole files, with the mode a plain open() would give (a shared server's group reads them)."""

from __future__ import annotations

import os
import stat

from nlpexp.io import write_json_atomic, write_jsonl_atomic, write_text_atomic


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_files_get_the_umask_mode_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    os.umask(old)
    expected = 0o666 & ~old
    write_text_atomic(tmp_path / "trials.md", "| a |\n")
    write_json_atomic(tmp_path / "best.json", {"a": 1})
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert _mode(tmp_path / "trials.md") == _mode(tmp_path / "best.json") == _mode(plain) == expected
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_an_existing_file_keeps_its_mode(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("old")
    path.chmod(0o600)
    write_text_atomic(path, "new")
    assert path.read_text() == "new" and _mode(path) == 0o600


def test_sweep_summary_files_are_group_readable(tmp_path):
    import optuna

    from nlpexp.sweep.summary import write_summary

    study = optuna.create_study(study_name="s", direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    write_summary(study, tmp_path)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(_mode(p) & stat.S_IRGRP for p in written)


def test_jsonl_rows_one_a_line_text_readable_and_a_failed_row_leaves_the_old_file(tmp_path):
    import json

    import pytest

    path = tmp_path / "rows.jsonl"
    assert write_jsonl_atomic(path, [{"text": "영화 좋다", "n": 1}, {"text": "a\nb"}]) == 2
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [{"text": "영화 좋다", "n": 1}, {"text": "a\nb"}]
    assert "영화" in lines[0]  # not \uXXXX escapes: the files are read by people
    with pytest.raises(TypeError):  # a row that is no JSON: nothing half-written, the old file stays whole
        write_jsonl_atomic(path, [{"ok": 1}, {"bad": object()}])
    assert len(path.read_text(encoding="utf-8").splitlines()) == 2 and sorted(os.listdir(tmp_path)) == ["rows.jsonl"]
