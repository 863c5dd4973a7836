"""One sampler per study and sweep process, seeded once.

A sampler's seed fixes the points it draws. A fresh study is sampled with the configured seed itself, so
that it draws what the official sweeper draws. A process that joins a study with trials in it (a resumed
sweep, a second sweep process) must not draw the first process's points again, so its sampler is seeded
from (seed, trials in the study when it joined, its rank among processes that joined at that count):
reproducible, as a rerun of the same history joins at the same count, and independent of every other
stream, unlike `seed + k` (seeds 42 and 43 would share all but one stream).

The grid and QMC samplers keep the seed: theirs orders the grid or scrambles the sequence, whose position
lives in the study, and they never draw a point twice.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # (Hydra imports every plugin module at start-up: optuna only once a sweep needs it)
    from optuna.storages import BaseStorage

STREAM_ATTR = "nlpexp:sampler_stream"
KEEP_SEED = ("GridSampler", "QMCSampler")


def stream_seed(seed: int | None, joined_at: int, rank: int) -> int | None:
    """The seed of the stream (joined_at, rank) of `seed`; the seed itself for the first stream."""
    if seed is None or (joined_at, rank) == (0, 0):
        return seed
    return int(np.random.SeedSequence([seed, joined_at, rank]).generate_state(1)[0])


def join_study(storage: BaseStorage, study_id: int) -> tuple[int, int]:
    """Record this process's joining; returns (trials in the study, rank among processes that found as many).

    The rank comes from study attributes: a process counts those written before its own. (Two processes of one
    storage writing in the same instant can both count none and share a stream; each then still draws
    reproducible points, but may draw the other's.)
    """
    joined_at = len(storage.get_all_trials(study_id, deepcopy=False))
    prefix = f"{STREAM_ATTR}:{joined_at}:"
    rank = sum(key.startswith(prefix) for key in storage.get_study_system_attrs(study_id))
    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    storage.set_study_system_attr(study_id, prefix + token, time.time())
    return joined_at, rank


def seed_for(sampler_target: str, seed: int | None, joined_at: int, rank: int) -> int | None:
    if any(sampler_target.endswith(name) for name in KEEP_SEED):
        return seed
    return stream_seed(seed, joined_at, rank)
