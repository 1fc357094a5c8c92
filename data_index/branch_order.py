"""A branch's data order: the run's order from a position on, with some samples left out.

A run's order is the endless sequence of sample ids of data_index/order.py; step s takes
positions (s-1)*B .. s*B-1. A branch from step N that drops a set of samples takes, for each step
after N, the next B ids of that sequence that are not dropped, starting where its parent stood
after step N (`start`: N*B for a branch of a run). A slot that would have held a dropped sample
takes the next sample of the order instead, so batches stay full and every other sample keeps
its order. With `skip_until=W` the samples are dropped in steps N+1..W only (a window); from W
on the branch reads the order on from where it stood, dropping nothing.

A branch of a branch goes on from its parent's position (`position_after`) with its parent's
active dropped set, so a branch without intervention reproduces any parent, a branch included.
Like the order itself this is a pure function, so StepIndex.verify checks a branch's index too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zoo_common.errors import ZooError
from data_index.order import order_positions


@dataclass(frozen=True)
class BranchOrder:
    after_step: int  # the branch point N: the order gives steps N+1 on
    start: int  # the position of the run's order that step N+1 starts reading at
    skip: np.ndarray  # sample ids never trained on (in steps N+1..skip_until)
    skip_until: int | None = None  # None: dropped for good

    def batches(self, first_step: int, last_step: int, *, data_seed: int, batch_size: int,
                n_samples: int, train_ids: np.ndarray | None = None) -> np.ndarray:
        """Sample ids [last_step - first_step + 1, batch_size] of steps first..last."""
        if not self.after_step < first_step <= last_step:
            raise ZooError(f"a branch from step {self.after_step} trains steps "
                           f"{self.after_step + 1} on; asked for steps {first_step}..{last_step}")
        ids, _ = self._stream(last_step, data_seed=data_seed, batch_size=batch_size,
                              n_samples=n_samples, train_ids=train_ids)
        start = (first_step - self.after_step - 1) * batch_size
        return ids[start:].reshape(last_step - first_step + 1, batch_size)

    def position_after(self, step: int, *, data_seed: int, batch_size: int, n_samples: int,
                       train_ids: np.ndarray | None = None) -> int:
        """The position of the run's order that the step after `step` starts reading at."""
        if step <= self.after_step:
            raise ZooError(f"step {step} is not after this order's branch point {self.after_step}")
        return self._stream(step, data_seed=data_seed, batch_size=batch_size, n_samples=n_samples,
                            train_ids=train_ids)[1]

    def _stream(self, last_step: int, *, data_seed: int, batch_size: int, n_samples: int,
                train_ids: np.ndarray | None) -> tuple[np.ndarray, int]:
        """Every id of steps N+1..last_step, flat, and the position after them."""
        trainable = n_samples if train_ids is None else len(train_ids)
        skip = np.unique(np.asarray(self.skip, dtype=np.int64))
        filtered_steps = last_step - self.after_step
        if self.skip_until is not None:
            filtered_steps = max(0, min(last_step, self.skip_until) - self.after_step)
        if len(skip) == 0:
            filtered_steps = 0
        if filtered_steps and batch_size == trainable:
            raise ZooError("a full-batch run trains on its whole train split every step: dropping "
                           "samples would refill each batch with repeats of the others; branch it "
                           "with --replace-data (a corpus without those samples) instead")
        read = lambda positions: order_positions(positions, data_seed=data_seed,
                                                 n_samples=n_samples, batch_size=batch_size,
                                                 train_ids=train_ids)
        parts, position = [], self.start
        if filtered_steps:
            allowed = np.ones(n_samples, dtype=bool)
            allowed[skip[(skip >= 0) & (skip < n_samples)]] = False
            left = int(allowed.sum()) if train_ids is None else int(allowed[np.asarray(train_ids)].sum())
            if left < batch_size:
                raise ZooError(f"dropping {len(skip)} samples leaves {left} to train on, fewer "
                               f"than one batch of {batch_size}")
            wanted, have = filtered_steps * batch_size, 0
            chunk = max(2 * wanted, 4096)
            while have < wanted:
                positions = np.arange(position, position + chunk, dtype=np.int64)
                ids = read(positions)
                keep = allowed[ids]
                if have + int(keep.sum()) >= wanted:  # the last one needed, and where it sat
                    last = int(np.flatnonzero(keep)[wanted - have - 1])
                    parts.append(ids[: last + 1][keep[: last + 1]])
                    position += last + 1
                    have = wanted
                else:
                    parts.append(ids[keep])
                    have += int(keep.sum())
                    position += chunk
        rest = (last_step - self.after_step - filtered_steps) * batch_size
        if rest:
            parts.append(read(np.arange(position, position + rest, dtype=np.int64)))
            position += rest
        return (np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)), position

    def is_plain(self, batch_size: int) -> bool:
        """Whether this is the run's own order (nothing dropped, nothing shifted)."""
        return len(self.skip) == 0 and self.start == self.after_step * batch_size
