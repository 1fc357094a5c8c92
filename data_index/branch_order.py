"""A branch's data order: its parent's order from the branch point on, with some samples skipped.

A branch from step N that drops a set of samples trains step s > N on the next `batch_size` ids of
the parent's order after position N * batch_size that are not dropped: a slot that would have held
a dropped sample takes the next sample of the order instead, so batches stay full and everything
else keeps its order. Like the order itself it is a pure function (of the parent's order, N and
the dropped set), so `StepIndex.verify` checks a branch's index as it checks a run's.
"""
from __future__ import annotations

import numpy as np

from zoo_common.errors import ZooError
from data_index.order import order_positions


def skipping_batches(first_step: int, last_step: int, *, after_step: int, skip: np.ndarray,
                     data_seed: int, batch_size: int, n_samples: int,
                     train_ids: np.ndarray | None = None) -> np.ndarray:
    """Sample ids [last_step - first_step + 1, batch_size] of steps first_step..last_step of a
    branch from `after_step` that never trains on the ids in `skip`."""
    if not after_step < first_step <= last_step:
        raise ZooError(f"a branch from step {after_step} trains steps {after_step + 1} on; "
                       f"asked for steps {first_step}..{last_step}")
    trainable = n_samples if train_ids is None else len(train_ids)
    if batch_size == trainable:
        raise ZooError("a full-batch run trains on its whole train split every step: dropping "
                       "samples would refill each batch with repeats of the others; branch it "
                       "with --replace-data (a corpus without those samples) instead")
    skip = np.unique(np.asarray(skip, dtype=np.int64))
    allowed = np.ones(n_samples, dtype=bool)
    allowed[skip[(skip >= 0) & (skip < n_samples)]] = False
    left = int(allowed.sum()) if train_ids is None else int(allowed[np.asarray(train_ids)].sum())
    if left < batch_size:
        raise ZooError(f"dropping {len(skip)} samples leaves {left} to train on, fewer than one "
                       f"batch of {batch_size}")
    wanted = (last_step - after_step) * batch_size  # ids from the branch point to last_step
    kept: list[np.ndarray] = []
    have, position = 0, after_step * batch_size
    chunk = max(wanted, 4096)
    while have < wanted:
        ids = order_positions(np.arange(position, position + chunk, dtype=np.int64),
                              data_seed=data_seed, n_samples=n_samples, batch_size=batch_size,
                              train_ids=train_ids)
        ids = ids[allowed[ids]]
        kept.append(ids)
        have += len(ids)
        position += chunk
    flat = np.concatenate(kept)[:wanted]
    start = (first_step - after_step - 1) * batch_size
    return flat[start:].reshape(last_step - first_step + 1, batch_size)
