"""Train/test splits of a task corpus: a pure function of (data seed, corpus size, train fraction).

Why seeded by the run's data seed: in a full-batch task the split is the one thing data can vary
between seeds (which pairs are held out), so seeds that differ in `data_seed` see different held-out
sets, and a run's split is recomputed anywhere from what it records. Sample i gets the key
`random_uint64(stream_key(SPLIT_DOMAIN, data_seed), n)[i]` (the counter-based generator of
order.py, never numpy's random module); the `round(fraction * n)` samples with the smallest keys
are the train split, in ascending id order, and the rest are the test split. The corpus records
the fraction and this rule, inside its fingerprint.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

from data_index.order import random_uint64, stream_key
from zoo_common.errors import ZooError

SPLIT_RULE = "smallest-splitmix64-keys/v1"
SPLIT_DOMAIN = 0x5350_4C49_54  # "SPLIT": keeps split keys apart from the order's (seed, epoch) keys


def check_train_fraction(value: float, where: str = "train_fraction") -> float:
    """A fraction strictly between 0 and 1, or one clear error naming `where`."""
    if not 0.0 < float(value) < 1.0:
        raise ZooError(f"{where} must lie strictly between 0 and 1 (e.g. 0.3), got {value}")
    return float(value)


def n_train(n_samples: int, train_fraction: float) -> int:
    """Size of the train split: round(fraction * n), at least 1 and leaving at least 1 for test."""
    check_train_fraction(train_fraction)
    if n_samples < 2:
        raise ZooError(f"a split needs at least 2 samples, the corpus has {n_samples}")
    return min(max(1, round(train_fraction * n_samples)), n_samples - 1)


def train_split(n_samples: int, train_fraction: float, data_seed: int) -> np.ndarray:
    """Sample ids of the train split, ascending (int64, read-only)."""
    return _splits(int(n_samples), float(train_fraction), int(data_seed))[0]


def held_out_split(n_samples: int, train_fraction: float, data_seed: int) -> np.ndarray:
    """Sample ids of the test split (every sample not in the train split), ascending."""
    return _splits(int(n_samples), float(train_fraction), int(data_seed))[1]


def split_digest(train_ids: np.ndarray) -> str:
    """sha256 of the train ids (little-endian int64): what a run records to pin its split."""
    return hashlib.sha256(np.ascontiguousarray(train_ids, dtype="<i8").tobytes()).hexdigest()


@lru_cache(maxsize=8)
def _splits(n_samples: int, train_fraction: float, data_seed: int) -> tuple[np.ndarray, np.ndarray]:
    size = n_train(n_samples, train_fraction)
    keys = random_uint64(stream_key(SPLIT_DOMAIN, data_seed), n_samples)
    chosen = np.zeros(n_samples, dtype=bool)
    chosen[np.argsort(keys, kind="stable")[:size]] = True
    train, test = np.flatnonzero(chosen), np.flatnonzero(~chosen)
    for ids in (train, test):
        ids.setflags(write=False)
    return train.astype(np.int64, copy=False), test.astype(np.int64, copy=False)
