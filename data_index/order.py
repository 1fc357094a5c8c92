"""The data order: a pure function of (data_seed, epoch, n_samples), and the global batch of a step.

Why counter-based: numpy's Generator streams may change between numpy versions, and a stateful
generator makes "which samples did step 90,000 see" depend on having replayed steps 1..89,999. Here
every sample of every epoch gets a 64-bit key `splitmix64(base(data_seed, epoch) + (i+1)*GOLDEN)`,
computed with plain wrapping uint64 arithmetic, and the epoch's permutation is the stable argsort of
the keys. Nothing depends on numpy's random module, on the number of processes, or on history.

Step s (s >= 1) consumes positions (s-1)*B .. s*B-1 of the endless concatenation
perm(epoch 0) ++ perm(epoch 1) ++ ...; a batch may straddle two epochs. A process of rank r in a
world of w processes takes the fixed contiguous slice r*B/w .. (r+1)*B/w of the global batch, so the
global order never depends on w.

A corpus with a train/test split (a task, data_index/splits.py) orders its train ids only: the
order above runs over positions 0..n_train-1 of the ascending train ids. When one batch is the whole
train set (full-batch training, as grokking uses) every step's batch is the train ids in ascending
order: nothing is shuffled, so nothing per step needs recording (the step index stays small).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from zoo_common.errors import ZooError

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MASK64 = (1 << 64) - 1


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer on a uint64 array (wrapping arithmetic): a strong 64-bit mixer."""
    z = np.asarray(x, dtype=np.uint64).copy()
    with np.errstate(over="ignore"):
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def stream_key(*words: int) -> np.uint64:
    """Fold integers (seed, epoch, document, ...) into one 64-bit key; order of words matters."""
    key = np.uint64(0)
    for word in words:
        if word < 0:
            raise ZooError(f"seeds and counters must be >= 0, got {word}")
        with np.errstate(over="ignore"):
            mixed = key ^ np.uint64(word & _MASK64) ^ (np.uint64(word >> 64 & _MASK64) * GOLDEN)
            key = splitmix64(np.array([mixed + GOLDEN]))[0]
    return np.uint64(key)


def random_uint64(key: np.uint64, count: int, *, start: int = 0) -> np.ndarray:
    """Counter-mode stream: element i is splitmix64(key + (start+i+1)*GOLDEN)."""
    counters = np.arange(start + 1, start + count + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return splitmix64(key + counters * GOLDEN)


def permutation(data_seed: int, epoch: int, n_samples: int) -> np.ndarray:
    """The order of all samples in one epoch (int64, read-only); identical on every machine."""
    if n_samples <= 0:
        raise ZooError(f"n_samples must be > 0, got {n_samples}")
    return _cached_permutation(int(data_seed), int(epoch), int(n_samples))


@lru_cache(maxsize=4)
def _cached_permutation(data_seed: int, epoch: int, n_samples: int) -> np.ndarray:
    keys = random_uint64(stream_key(data_seed, epoch), n_samples)
    order = np.argsort(keys, kind="stable").astype(np.int64, copy=False)
    order.setflags(write=False)
    return order


def global_batch(step: int, *, data_seed: int, batch_size: int, n_samples: int,
                 train_ids: np.ndarray | None = None) -> np.ndarray:
    """Sample ids of step `step`'s global batch (step >= 1 consumes global batch number step-1).

    `train_ids`: the ascending ids a run may train on (its train split); None: all n_samples."""
    if step < 1:
        raise ZooError(f"step {step} has no batch: step 0 is the initial weights, batches start at step 1")
    if batch_size <= 0:
        raise ZooError(f"batch_size must be > 0, got {batch_size}")
    trainable = n_samples if train_ids is None else len(train_ids)
    if batch_size > trainable:
        if train_ids is not None:
            raise ZooError(
                f"the train split has {trainable} samples, fewer than one batch of {batch_size}: "
                f"for full-batch training set batch_size to {trainable}"
            )
        raise ZooError(
            f"the corpus has {n_samples} samples, fewer than one batch of {batch_size}: "
            "prepare a larger corpus, use a shorter seq_len, or a smaller batch"
        )
    positions = np.arange((step - 1) * batch_size, step * batch_size, dtype=np.int64)
    return order_positions(positions, data_seed=data_seed, n_samples=n_samples, train_ids=train_ids,
                           batch_size=batch_size)


def order_positions(positions: np.ndarray, *, data_seed: int, n_samples: int, batch_size: int,
                    train_ids: np.ndarray | None = None) -> np.ndarray:
    """Sample ids at `positions` of the run's order (any steps at once; see the module docstring)."""
    positions = np.asarray(positions, dtype=np.int64)
    trainable = n_samples if train_ids is None else len(train_ids)
    if batch_size == trainable:  # full batch: every step is the whole train set, in id order
        offsets = positions % trainable
        return offsets if train_ids is None else np.asarray(train_ids, dtype=np.int64)[offsets]
    local = positions_to_samples(positions, data_seed=data_seed, n_samples=trainable)
    return local if train_ids is None else np.asarray(train_ids, dtype=np.int64)[local]


def positions_to_samples(positions: np.ndarray, *, data_seed: int, n_samples: int) -> np.ndarray:
    """Map positions of the endless epoch concatenation to sample ids (vectorized, any epochs)."""
    positions = np.asarray(positions, dtype=np.int64)
    epochs = positions // n_samples
    offsets = positions % n_samples
    out = np.empty(positions.shape, dtype=np.int64)
    for epoch in np.unique(epochs):
        mask = epochs == epoch
        out[mask] = permutation(data_seed, int(epoch), n_samples)[offsets[mask]]
    return out


def rank_slice(batch: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """The fixed contiguous share of the global batch that process `rank` of `world_size` trains on."""
    size = len(batch)
    if world_size <= 0:
        raise ZooError(f"world_size must be > 0, got {world_size}")
    if not 0 <= rank < world_size:
        raise ZooError(f"rank {rank} is outside 0..{world_size - 1} for world_size {world_size}")
    if size % world_size:
        divisors = [d for d in range(1, size + 1) if size % d == 0]
        raise ZooError(
            f"batch size {size} is not divisible by world_size {world_size}; "
            f"valid world sizes for this batch: {divisors}"
        )
    share = size // world_size
    return batch[rank * share : (rank + 1) * share]
