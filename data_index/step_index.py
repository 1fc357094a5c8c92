"""The per-step data index of a run: which sample sat at which position of every step's batch.

Written while training through a PartLog (rows step, position, sample; Parquet + zstd; a crash
loses at most the unflushed tail) with an `index.json` header naming the corpus fingerprint, the
data seed, the batch size and the corpus size. It records what was actually consumed, and
`verify()` checks it against the pure order function, so an index can never silently disagree with
the data order (or point past the end of the corpus).

A run on a split corpus (a task) records the train fraction in the header, and its order runs over
the train split only. A full-batch run (one batch = the whole train split, data_index/order.py)
writes its batch once (`full_batch.parquet`) and then one row per step (`step` only): 10,000
full-batch steps of 3,831 samples are 10,000 small rows, not 38 million.

A branch's index (training/branching.py) begins after its branch point (`begins_after`). One whose
order is not the run's own (data_index/branch_order.py: dropped samples, or a branch of such a
branch) records it: `order_start`, `skip_until`, the count of `skipped` and the ids themselves
(`skipped.parquet`), so verify() checks it against that order.
"""
from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from zoo_common.errors import IntegrityError, InvalidInputError, ZooError
from zoo_common.location import Location
from data_index.branch_order import BranchOrder
from data_index.features import drawn_batch
from data_index.order import order_positions
from data_index.part_log import PartLog
from data_index.splits import train_split

# The first queries scan the ids (linear, milliseconds, nothing to build); a caller who asks more
# than this many pays one sort and then answers in microseconds.
_SCAN_QUERIES = 16

HEADER = "index.json"
FORMAT = "zoo-step-index"
SCHEMA = pa.schema([("step", pa.int64()), ("position", pa.int32()), ("sample", pa.int64())])
# step/position are runs and repeats (dictionary + RLE); sample ids are near-random, so their bytes
# are split into streams (high bytes mostly zero) before zstd, which compresses them much better.
PARQUET_OPTIONS = {"use_dictionary": ["step", "position"], "column_encoding": {"sample": "BYTE_STREAM_SPLIT"}}
FULL_BATCH_FILE = "full_batch.parquet"
FULL_BATCH_SCHEMA = pa.schema([("step", pa.int64())])
SKIPPED_FILE = "skipped.parquet"  # a branch's dropped samples (its header says how many)


def _train_ids(header: dict) -> np.ndarray | None:
    """The ascending ids the run's order runs over (its train split), or None for all samples."""
    fraction = header.get("train_fraction")
    if fraction is None:
        return None
    return train_split(header["n_samples"], fraction, header["data_seed"])


def _is_full_batch(header: dict) -> bool:
    if header.get("drawn"):
        return False
    train = _train_ids(header)
    return header["batch_size"] == (header["n_samples"] if train is None else len(train))


def _read_header(location: Location) -> dict | None:
    data = location.read_if_exists(HEADER)
    if data is None:
        return None
    try:
        header = json.loads(data)
    except ValueError as exc:
        raise IntegrityError(f"{location.path(HEADER)} is not valid JSON: {exc}") from None
    if header.get("format") != FORMAT:
        raise IntegrityError(f"{location.path(HEADER)} is not a step index header (format {header.get('format')!r})")
    return header


class StepIndexWriter:
    """Append each step's global batch; `after_step=k` resumes a run from its keyframe at step k.

    Every `flush_every` steps (and on `flush`/`close`) the buffered steps become one part file.
    `append` only checks the step number and shape and keeps a copy of the ids: the range check
    and the table work run once per flush, because right after a training step every numpy and
    Python call runs on cold caches, much slower than warm (benchmarks/RESULTS.md).
    """

    def __init__(
        self,
        location: Location,
        *,
        corpus_fingerprint: str,
        data_seed: int,
        batch_size: int,
        n_samples: int,
        flush_every: int = 64,
        after_step: int | None = None,
        write_part: Callable[[str, bytes], None] | None = None,
        train_fraction: float | None = None,
        begins_after: int = 0,
        order: BranchOrder | None = None,
        drawn: bool = False,
    ):
        """`begins_after=N`: a new index whose first step is N+1 (a branch's); `order`: the
        branch's order when it is not the run's own (data_index/branch_order.py); `drawn`: the
        samples are drawn afresh, step s's are (s-1)*B .. s*B-1 (features.py), one row per step."""
        if batch_size <= 0 or n_samples <= 0:
            raise ZooError(f"batch_size and n_samples must be > 0, got {batch_size} and {n_samples}")
        if batch_size > n_samples:
            raise ZooError(f"the corpus has {n_samples} samples, fewer than one batch of {batch_size}")
        self.header = {
            "format": FORMAT,
            "version": 1,
            "corpus_fingerprint": corpus_fingerprint,
            "data_seed": int(data_seed),
            "batch_size": int(batch_size),
            "n_samples": int(n_samples),
        }
        if train_fraction is not None:  # absent otherwise: older headers stay what they were
            self.header["train_fraction"] = float(train_fraction)
            train = _train_ids(self.header)
            if batch_size > len(train):
                raise ZooError(f"the train split has {len(train)} samples, fewer than one batch of {batch_size}")
        if begins_after:  # absent for a run's index, as the order's: its header stays as it was
            self.header["begins_after"] = int(begins_after)
        if drawn:
            self.header["drawn"] = True
        self._drawn = drawn
        skipped = None
        if order is not None and not order.is_plain(batch_size):
            skipped = np.unique(np.asarray(order.skip, dtype=np.int64))
            self.header.update({"order_start": int(order.start), "skipped": int(len(skipped)),
                                "skip_until": order.skip_until})
        # full batch: the one batch every step trains on; each step is then one row of its number
        self._full_batch = (order_positions(np.arange(batch_size), data_seed=data_seed, n_samples=n_samples,
                                            batch_size=batch_size, train_ids=_train_ids(self.header))
                            if _is_full_batch(self.header) else None)
        existing = _read_header(location)
        if existing is not None:
            differing = [k for k, v in self.header.items() if existing.get(k) != v]
            if differing:
                detail = ", ".join(f"{k}: recorded {existing.get(k)!r}, now {self.header[k]!r}" for k in differing)
                raise ZooError(f"the step index at {location.url} belongs to another run ({detail})")
        else:
            if self._full_batch is not None:
                location.write_atomic(FULL_BATCH_FILE, _parquet_bytes(pa.table({"sample": self._full_batch})))
            if skipped is not None and len(skipped):
                location.write_atomic(SKIPPED_FILE, _parquet_bytes(pa.table({"sample": skipped})))
            location.write_atomic(HEADER, json.dumps(self.header, indent=2).encode())
        self.location = location
        self.batch_size = int(batch_size)
        self.n_samples = int(n_samples)
        if flush_every <= 0:
            raise ZooError(f"flush_every must be > 0, got {flush_every}")
        self._flush_every = flush_every
        self._pending: list[np.ndarray] = []  # ids of the steps after the last flush
        self._log = (PartLog(location, schema=SCHEMA, key="step", parquet_options=PARQUET_OPTIONS,
                             write_part=write_part) if not self._one_row_per_step else
                     PartLog(location, schema=FULL_BATCH_SCHEMA, key="step", write_part=write_part))
        recorded = self._log.last_key
        if after_step is None:
            if recorded is not None:
                raise ZooError(
                    f"the step index at {location.url} already records steps up to {recorded}; "
                    f"pass after_step=K to resume from a keyframe at step K"
                )
            self._last_step = int(begins_after)
        else:
            if after_step < 0:
                raise ZooError(f"after_step must be >= 0, got {after_step}")
            if after_step > (recorded or int(begins_after)):
                raise ZooError(
                    f"cannot resume the step index at {location.url} after step {after_step}: it records "
                    f"steps only up to {recorded or 0} (flush the index whenever a keyframe is saved)"
                )
            self._log.truncate_after(after_step)
            self._last_step = after_step
        self._positions = np.arange(self.batch_size, dtype=np.int32)

    @property
    def _one_row_per_step(self) -> bool:
        return self._full_batch is not None or self._drawn

    @property
    def last_step(self) -> int:
        return self._last_step

    def append(self, step: int, sample_ids: np.ndarray) -> None:
        if step != self._last_step + 1:
            raise ZooError(f"step index expects step {self._last_step + 1} next, got step {step}")
        ids = np.array(sample_ids, dtype=np.int64)  # a copy: the caller may reuse its array
        if ids.shape != (self.batch_size,):
            raise ZooError(f"step {step}: expected {self.batch_size} sample ids, got shape {ids.shape}")
        if self._full_batch is not None and not np.array_equal(ids, self._full_batch):
            raise ZooError(f"step {step}: a full-batch run trains on its whole train split, in id order, "
                           f"every step; these ids differ from it")
        if self._drawn and not np.array_equal(ids, drawn_batch(step, self.batch_size)):
            raise ZooError(f"step {step}: drawn data trains on samples {(step - 1) * self.batch_size}.."
                           f"{step * self.batch_size - 1}; these ids differ")
        self._pending.append(ids)
        self._last_step = step
        if len(self._pending) >= self._flush_every:
            self.flush()

    def flush(self) -> None:
        """Write the buffered steps as one part; steps before a bad one are written, then the bad
        one is refused by step number."""
        if not self._pending:
            return
        ids, first = np.concatenate(self._pending), self._last_step - len(self._pending) + 1
        if self._one_row_per_step:  # checked in append: one row per step is the record
            steps = len(self._pending)
            self._pending = []
            self._log.append({"step": np.arange(first, first + steps, dtype=np.int64)})
            self._log.flush()
            return
        self._pending = []
        outside = np.flatnonzero((ids < 0) | (ids >= self.n_samples))
        good_steps = len(ids) // self.batch_size if outside.size == 0 else int(outside[0]) // self.batch_size
        if good_steps:
            rows = good_steps * self.batch_size
            self._log.append({
                "step": np.repeat(np.arange(first, first + good_steps, dtype=np.int64), self.batch_size),
                "position": np.tile(self._positions, good_steps),
                "sample": ids[:rows],
            })
            self._log.flush()
        if outside.size:
            self._last_step = first + good_steps - 1
            raise ZooError(f"step {first + good_steps}: sample ids must lie in 0..{self.n_samples - 1}")

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._log.close()

    def __enter__(self) -> StepIndexWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class StepIndex:
    """A recorded index, read whole into memory (8 bytes per sample id): batch_ids, steps_of, verify."""

    def __init__(self, location: Location, header: dict, samples: np.ndarray, first_step: int, *,
                 full_batch: np.ndarray | None = None, n_full_steps: int = 0):
        """`n_full_steps`: the number of steps of an index of one row per step (full batch, drawn)."""
        self.location = location
        self.corpus_fingerprint: str = header["corpus_fingerprint"]
        self.data_seed: int = header["data_seed"]
        self.batch_size: int = header["batch_size"]
        self.n_samples: int = header["n_samples"]
        self.train_fraction: float | None = header.get("train_fraction")
        self.begins_after: int = header.get("begins_after", 0)
        self.skipped: int = header.get("skipped", 0)
        self._header = header
        self.first_step = first_step
        self.full_batch: np.ndarray | None = full_batch  # the one batch of every step, or None
        self.drawn: bool = bool(header.get("drawn"))  # samples drawn afresh for every step
        one_row = full_batch is not None or self.drawn
        n_steps = n_full_steps if one_row else len(samples) // self.batch_size
        self.last_step = first_step + n_steps - 1
        self._samples = samples
        self._sorted_rows: np.ndarray | None = None
        self._queries = 0
        self._sorted_samples: np.ndarray | None = None

    @classmethod
    def open(cls, location: Location, *, header: dict | None = None) -> StepIndex:
        """The index at `location`; `header`: its index.json, when the caller has read it."""
        header = _read_header(location) if header is None else header
        if header is None:
            raise ZooError(f"no step index at {location.url} (missing {HEADER})")
        if _is_full_batch(header) or header.get("drawn"):
            return cls._open_one_row_per_step(location, header)
        table = PartLog(location, schema=SCHEMA, key="step").read()
        batch = header["batch_size"]
        steps = table.column("step").to_numpy()
        positions = table.column("position").to_numpy()
        samples = np.ascontiguousarray(table.column("sample").to_numpy(), dtype=np.int64)
        if len(steps) == 0:
            return cls(location, header, samples, first_step=header.get("begins_after", 0) + 1)
        first = int(steps[0])
        n_steps = len(steps) // batch
        expected_steps = np.repeat(np.arange(first, first + n_steps, dtype=np.int64), batch)
        if len(steps) % batch or not np.array_equal(steps, expected_steps):
            bad = _first_mismatch(steps, expected_steps)
            raise IntegrityError(f"step index at {location.url} is not contiguous: row {bad} breaks steps of {batch} rows")
        if not np.array_equal(positions, np.tile(np.arange(batch, dtype=positions.dtype), n_steps)):
            raise IntegrityError(f"step index at {location.url} has positions out of order")
        if samples.min() < 0 or samples.max() >= header["n_samples"]:
            raise IntegrityError(f"step index at {location.url} points outside the corpus of {header['n_samples']} samples")
        return cls(location, header, samples, first_step=first)

    @classmethod
    def _open_one_row_per_step(cls, location: Location, header: dict) -> StepIndex:
        batch = None if header.get("drawn") else cls._full_batch_ids(location, header)
        steps = PartLog(location, schema=FULL_BATCH_SCHEMA, key="step").read().column("step").to_numpy()
        first = int(steps[0]) if len(steps) else header.get("begins_after", 0) + 1
        if not np.array_equal(steps, np.arange(first, first + len(steps))):
            bad = _first_mismatch(steps, np.arange(first, first + len(steps)))
            raise IntegrityError(f"step index at {location.url} is not contiguous: row {bad} breaks the steps")
        return cls(location, header, np.zeros(0, dtype=np.int64), first, full_batch=batch,
                   n_full_steps=len(steps))

    @staticmethod
    def _full_batch_ids(location: Location, header: dict) -> np.ndarray:
        try:
            batch = pq.read_table(pa.BufferReader(location.read_bytes(FULL_BATCH_FILE))).column("sample")
        except (OSError, pa.ArrowInvalid, KeyError) as exc:
            raise IntegrityError(f"full-batch step index at {location.url}: cannot read {FULL_BATCH_FILE}: {exc}") from None
        batch = np.ascontiguousarray(batch.to_numpy(), dtype=np.int64)
        if len(batch) != header["batch_size"] or (len(batch) and (batch.min() < 0 or batch.max() >= header["n_samples"])):
            raise IntegrityError(f"{location.path(FULL_BATCH_FILE)} does not hold one batch of "
                                 f"{header['batch_size']} ids inside the corpus of {header['n_samples']} samples")
        return batch

    @property
    def n_steps(self) -> int:
        return self.last_step - self.first_step + 1

    def _range_text(self) -> str:
        return "no steps" if self.n_steps <= 0 else f"steps {self.first_step}..{self.last_step}"

    def batch_ids(self, step: int) -> np.ndarray:
        if not self.first_step <= step <= self.last_step:
            raise ZooError(f"step {step} is not in the data index at {self.location.url}: it records {self._range_text()}")
        if self.full_batch is not None:
            return self.full_batch.copy()
        if self.drawn:
            return drawn_batch(step, self.batch_size)
        row = (step - self.first_step) * self.batch_size
        return self._samples[row : row + self.batch_size].copy()

    def steps_of(self, sample_id: int) -> list[tuple[int, int]]:
        """(step, position) of every time `sample_id` was in a batch, sorted; [] if never."""
        if self.drawn:
            raise InvalidInputError(
                "this run's data is drawn afresh for every step (builtin:sparse_features): sample k "
                "is row k of an endless stream, trained on once, at step k // batch_size + 1, and no "
                "sample repeats; there is nothing for steps_of to look up. zoo.batch(name, seed=S, "
                "step=N) gives the exact values step N trained on")
        if not 0 <= sample_id < self.n_samples:
            raise ZooError(f"sample {sample_id} is outside the corpus: valid ids 0..{self.n_samples - 1}")
        if self.full_batch is not None:
            where = np.flatnonzero(self.full_batch == sample_id)
            return [(step, int(pos)) for step in range(self.first_step, self.last_step + 1) for pos in where]
        self._queries += 1
        if self._sorted_rows is None and self._queries <= _SCAN_QUERIES:
            rows = np.flatnonzero(self._samples == sample_id)  # one pass, no setup
        else:
            if self._sorted_rows is None:
                self._build_inverted_index()
            lo, hi = np.searchsorted(self._sorted_samples, [sample_id, sample_id + 1])
            rows = self._sorted_rows[lo:hi]
        return [(int(self.first_step + r // self.batch_size), int(r % self.batch_size)) for r in rows]

    def branch_order(self) -> BranchOrder | None:
        """The branch order this index was written in; None: the run's own order (from
        begins_after on)."""
        if "order_start" not in self._header:
            return None
        return BranchOrder(self.begins_after, int(self._header["order_start"]),
                           self.skipped_samples(), self._header.get("skip_until"))

    def skipped_samples(self) -> np.ndarray:
        """The samples a branch's order leaves out (empty for a run's index)."""
        if not self.skipped:
            return np.zeros(0, dtype=np.int64)
        try:
            table = pq.read_table(pa.BufferReader(self.location.read_bytes(SKIPPED_FILE)))
        except (OSError, pa.ArrowInvalid, KeyError) as exc:
            raise IntegrityError(f"step index at {self.location.url}: cannot read {SKIPPED_FILE}: {exc}") from None
        ids = np.asarray(table.column("sample").to_numpy(), dtype=np.int64)
        if len(ids) != self.skipped:
            raise IntegrityError(f"{self.location.path(SKIPPED_FILE)} holds {len(ids)} ids; the header "
                                 f"records {self.skipped}")
        return ids

    def _build_inverted_index(self) -> None:
        """Rows sorted by (sample, row): one sort of unique int64 keys (faster than a stable argsort)."""
        rows = len(self._samples)
        if self.n_samples * max(rows, 1) < 2**62:
            keys = np.sort(self._samples * rows + np.arange(rows, dtype=np.int64))
            self._sorted_samples, self._sorted_rows = np.divmod(keys, max(rows, 1))
        else:
            self._sorted_rows = np.argsort(self._samples, kind="stable")
            self._sorted_samples = self._samples[self._sorted_rows]

    def verify(self) -> None:
        """Every recorded step against global_batch(); IntegrityError naming the first bad step."""
        if self.n_steps <= 0 or self.drawn:  # drawn: contiguous steps, checked on open, are all
            return
        train = _train_ids({"n_samples": self.n_samples, "data_seed": self.data_seed,
                            "train_fraction": self.train_fraction})
        recorded = self._samples if self.full_batch is None else self.full_batch
        order = self.branch_order()
        if order is not None:
            expected = order.batches(self.first_step, self.last_step, data_seed=self.data_seed,
                                     batch_size=self.batch_size, n_samples=self.n_samples,
                                     train_ids=train).reshape(-1)
        else:
            start = (self.first_step - 1) * self.batch_size if self.full_batch is None else 0
            positions = np.arange(start, start + len(recorded), dtype=np.int64)
            expected = order_positions(positions, data_seed=self.data_seed, n_samples=self.n_samples,
                                       batch_size=self.batch_size, train_ids=train)
        bad = _first_mismatch(recorded, expected)
        if bad is not None:
            step = self.first_step + bad // self.batch_size
            raise IntegrityError(
                f"step {step} of the data index at {self.location.url} differs from the data order "
                f"(data_seed {self.data_seed}, batch {self.batch_size}, {self.n_samples} samples): "
                f"position {bad % self.batch_size} holds sample {recorded[bad]}, the order gives {expected[bad]}"
            )


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def _first_mismatch(a: np.ndarray, b: np.ndarray) -> int | None:
    n = min(len(a), len(b))
    diff = np.flatnonzero(a[:n] != b[:n])
    if len(diff):
        return int(diff[0])
    return None if len(a) == len(b) else n
