"""Seeding: one sampler per study and process, seeded once; other seeds and resumed studies draw other points."""

from __future__ import annotations

import optuna
import pytest

from nlpexp.sweep.study import load_study, sampler_seed, stream_seed
from tests.sweeper_app.runner import sweep


def drawn(sweep_dir) -> list[tuple]:
    return [(t.params["x"], t.params["y"]) for t in load_study(str(sweep_dir))[0].get_trials()]


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_seeds_42_and_43_do_not_repeat_draws(tmp_path, sampler):
    for seed in (42, 43):
        assert sweep(f"hydra.sweep.dir={tmp_path / str(seed)}", f"hydra/sweeper/sampler={sampler}",
                     f"hydra.sweeper.sampler.seed={seed}", "hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=1") == 0
    a, b = drawn(tmp_path / "42"), drawn(tmp_path / "43")
    assert len(a) == len(b) == 6
    # (re-seeding each batch with seed + first trial number made 43's trials 42's shifted by one)
    assert not {x for x, _ in a} & {x for x, _ in b} and not {y for _, y in a} & {y for _, y in b}


def test_a_resumed_study_draws_new_reproducible_points(tmp_path):
    def two_steps(where) -> list[tuple]:
        args = (f"hydra.sweep.dir={where}", "hydra/sweeper/sampler=random", "hydra.sweeper.study_name=resumed")
        assert sweep(*args, "hydra.sweeper.n_trials=3") == 0
        assert sweep(*args, "hydra.sweeper.n_trials=6") == 0  # the same study, resumed by another process
        return drawn(where)

    first = two_steps(tmp_path / "a")
    assert len(set(first)) == 6
    assert not {x for x, _ in first[:3]} & {x for x, _ in first[3:]}  # a re-seeded sampler redrew trials 0-2
    assert two_steps(tmp_path / "b") == first  # reproducible


def test_processes_joining_a_study_get_their_own_streams(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    study = optuna.create_study(storage=storage, study_name="s")
    random, grid = {"_target_": "optuna.samplers.RandomSampler", "seed": 42}, {"_target_": "x.GridSampler", "seed": 42}
    assert sampler_seed(storage, study, random) == (42, "joined the study at trial 0, rank 0")
    second = sampler_seed(storage, study, random)  # a second process at the same moment
    assert second == (stream_seed(42, 0, 1), "joined the study at trial 0, rank 1")
    study.enqueue_trial({})
    assert sampler_seed(storage, study, random)[1] == "joined the study at trial 1, rank 0"  # a resumed study
    assert sampler_seed(storage, study, grid)[0] == 42  # its seed orders the grid
    seeds = {stream_seed(42, 0, 0), stream_seed(42, 0, 1), stream_seed(42, 1, 0), stream_seed(43, 0, 0),
             stream_seed(43, 1, 0), stream_seed(43, 0, 1)}
    assert len(seeds) == 6 and stream_seed(42, 0, 0) == 42  # a fresh study: the seed itself
    assert stream_seed(None, 3, 1) is None
