"""nlpexp.adapters, every use of Optuna beyond its documented API: fails loudly when Optuna changes."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nlpexp import adapters as adapter
from nlpexp.sweep.storage import open_storage, sqlite_url

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_the_installed_release_is_the_one_the_adapter_was_written_for():
    pin = re.search(r'"optuna==([^"]+)"', PYPROJECT.read_text()).group(1)
    assert version("optuna") == adapter.OPTUNA_VERSION == pin, (
        "optuna changed: check every Optuna use in src/nlpexp/adapters.py, then bump OPTUNA_VERSION with the pin")


def test_heartbeats_are_told_apart_by_storage(tmp_path):
    beats = open_storage(f"sqlite:///{tmp_path / 'beats.db'}", heartbeat_interval=5, grace_period=10, max_retry=1)
    assert adapter.has_heartbeat(beats)
    assert not adapter.has_heartbeat(open_storage(f"sqlite:///{tmp_path / 'silent.db'}"))
    assert not adapter.has_heartbeat(open_storage(f"journal:///{tmp_path / 'journal.log'}"))
    assert not adapter.has_heartbeat(optuna.storages.InMemoryStorage())


def test_a_trial_asked_elsewhere_is_reported_to_and_its_state_read(tmp_path):
    storage = open_storage(sqlite_url(tmp_path))
    asked = optuna.create_study(study_name="s", storage=storage).ask()
    trial = adapter.trial_of(optuna.load_study(study_name="s", storage=storage),
                             storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name("s"), 0))
    trial.report(0.5, 1)
    assert trial.number == asked.number == 0 and adapter.trial_state(trial) == TrialState.RUNNING
    asked.study.tell(asked, state=TrialState.FAIL)
    assert adapter.trial_state(trial) == TrialState.FAIL
    assert asked.study.trials[0].intermediate_values == {1: 0.5}


def test_telling_a_grid_s_last_point_stores_it():
    study = optuna.create_study(sampler=optuna.samplers.GridSampler({"x": [1]}))
    trial = study.ask()
    trial.suggest_categorical("x", [1])
    with pytest.raises(RuntimeError, match="Study.stop"):  # what the adapter catches
        study.tell(trial, 1.0)
    second = optuna.create_study(sampler=optuna.samplers.GridSampler({"x": [1]}))
    trial = second.ask()
    trial.suggest_categorical("x", [1])
    adapter.tell(second, trial, values=1.0)
    assert second.trials[0].state == TrialState.COMPLETE
    with pytest.raises(ValueError):  # any other error goes through
        adapter.tell(second, trial, values=2.0)
