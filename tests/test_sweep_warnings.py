"""SLURM accounting warnings once per sweep: submitit's real watcher polling a sacct that is not there."""

from __future__ import annotations

import logging

from hydra_plugins.nlpexp_optuna_sweeper.sweeper import library_warnings_once


def _poll(times: int) -> None:
    from submitit.slurm.slurm import SlurmInfoWatcher

    watcher = SlurmInfoWatcher(delay_s=0)
    watcher.register_job("4242")
    for _ in range(times):
        watcher.update()  # sacct is not on PATH: submitit logs `Call #N - Bypassing sacct error ...`


def test_each_distinct_accounting_warning_is_one_line_per_sweep(monkeypatch, tmp_path, caplog, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sacct here, whatever the machine has
    caplog.set_level(logging.WARNING)
    with library_warnings_once("submitit"):
        _poll(4)
    lines = [r.getMessage() for r in caplog.records if r.name == "submitit"]
    assert len(lines) == 1 and "Bypassing sacct error" in lines[0]
    captured = capsys.readouterr()
    assert "Bypassing sacct error" not in captured.out + captured.err  # not again on submitit's own handlers

    caplog.clear()
    _poll(2)  # after the sweep, submitit logs as it did (its own handlers back in place)
    assert len([r for r in caplog.records if r.name == "submitit"]) == 2
    assert logging.getLogger("submitit").handlers
