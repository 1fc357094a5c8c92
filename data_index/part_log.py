"""An append-safe table log in Parquet (zstd), made of immutable part files.

Why parts: object stores cannot append, and a process killed mid-write must never damage rows that
were already on record. Each flush writes the buffered rows as one new part file with
`Location.write_atomic` (tmp + fsync + rename locally, one PUT on object stores), so a crash loses at
most the rows not yet flushed.

Part names are `part-{seq:08d}-{first:012d}-{last:012d}.parquet`: a sequence number (write order)
and the first/last key in the part. `truncate_after(k)` (resuming from a keyframe at k) removes
parts that start after k, newest first, then rewrites the one straddling k as a new file with the
SAME sequence number and a smaller last key, and only then deletes the old one. A crash at any point
leaves a readable log: a prefix of the old rows, or, when both versions of the straddling part
exist, the reader takes the one with the smaller last key (the trimmed one). Keys must not decrease
across appends, so truncation by key is truncation in time.
"""
from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from zoo_common.errors import IntegrityError, ZooError
from zoo_common.location import Location

_PART = re.compile(r"^part-(\d{8})-(\d{12})-(\d{12})\.parquet$")


@dataclass(frozen=True)
class PartFile:
    name: str
    seq: int
    first: int
    last: int


def list_parts(location: Location) -> list[PartFile]:
    """The live part files in write order (a trimmed duplicate replaces its untrimmed twin)."""
    by_seq: dict[int, PartFile] = {}
    for name in location.list():
        match = _PART.match(name)
        if not match:
            continue
        part = PartFile(name, *(int(g) for g in match.groups()))
        kept = by_seq.get(part.seq)
        if kept is None or part.last < kept.last:
            by_seq[part.seq] = part
    return [by_seq[s] for s in sorted(by_seq)]


class PartLog:
    """Append rows (dict of equal-length columns); flushed every `flush_every` appends as a part.

    `write_part(name, data)` is where a flushed part file goes: by default
    `location.write_atomic(name, data)` at once; the training loop passes one that queues it on its
    background writer (a part's fsync would stall the training thread), or, at a keyframe, adds it
    to the keyframe's commit. Whoever passes one must make each write atomic and keep their order,
    and must not truncate while writes are queued.
    """

    def __init__(self, location: Location, *, schema: pa.Schema, key: str = "step", flush_every: int = 64,
                 parquet_options: dict | None = None,
                 write_part: Callable[[str, bytes], None] | None = None):
        if key not in schema.names:
            raise ZooError(f"key column {key!r} is not in the schema; columns: {schema.names}")
        if flush_every <= 0:
            raise ZooError(f"flush_every must be > 0, got {flush_every}")
        self.location = location
        self.schema = schema
        self.key = key
        self.flush_every = flush_every
        self.parquet_options = dict(parquet_options or {})  # e.g. column_encoding for compact ids
        self._write_flushed = write_part or location.write_atomic
        self._buffer: list[dict[str, np.ndarray]] = []
        self._closed = False
        parts = list_parts(location)
        self._next_seq = parts[-1].seq + 1 if parts else 0
        self._last_key: int | None = parts[-1].last if parts else None

    @property
    def last_key(self) -> int | None:
        """The largest key appended so far (flushed or buffered), None for an empty log."""
        return self._last_key

    def append(self, rows: dict) -> None:
        """Buffer rows; columns are validated here, their Arrow types when the part is written."""
        if self._closed:
            raise ZooError(f"the log at {self.location.url} is closed")
        if set(rows) != set(self.schema.names):
            raise ZooError(f"rows have columns {sorted(rows)}, the log schema has {self.schema.names}")
        columns = {name: np.asarray(rows[name]) for name in self.schema.names}
        lengths = {len(c) if c.ndim == 1 else -1 for c in columns.values()}
        if len(lengths) != 1 or -1 in lengths:
            raise ZooError(f"columns must be 1-D and of equal length, got lengths {sorted(lengths)}")
        keys = columns[self.key]
        if len(keys) == 0:
            return
        if not np.issubdtype(keys.dtype, np.integer):
            raise ZooError(f"key column {self.key!r} must hold integers, got {keys.dtype}")
        if self._last_key is not None and keys[0] < self._last_key:
            raise ZooError(
                f"{self.key} {keys[0]} comes after {self.key} {self._last_key} in {self.location.url}: "
                f"keys must not decrease (to rewrite from a step, truncate_after it first)"
            )
        if len(keys) > 1 and not bool(np.all(keys[1:] >= keys[:-1])):
            raise ZooError(f"{self.key} values within one append must not decrease")
        self._last_key = int(keys[-1])
        self._buffer.append(columns)
        if len(self._buffer) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Write buffered rows as one new part file (atomic); a no-op when nothing is buffered."""
        if not self._buffer:
            return
        self._write_part(self._next_seq, self._buffered_table(), self._write_flushed)
        self._next_seq += 1
        self._buffer = []

    def _buffered_table(self) -> pa.Table:
        try:
            return pa.table({f.name: _arrow_column(np.concatenate([c[f.name] for c in self._buffer]), f.type)
                             for f in self.schema}, schema=self.schema)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            self._buffer = []
            raise ZooError(f"buffered rows do not fit the log schema {self.schema}: {exc}") from None

    def close(self) -> None:
        if not self._closed:
            self.flush()
            self._closed = True

    def __enter__(self) -> PartLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read(self) -> pa.Table:
        """Every flushed row, in write order; a truncated or corrupt part -> IntegrityError."""
        tables = [self._read_part(part) for part in list_parts(self.location)]
        if not tables:
            return self.schema.empty_table()
        return pa.concat_tables(tables)

    def truncate_after(self, key_value: int) -> None:
        """Drop every row with key > key_value, flushed or buffered (crash-safe, see module doc)."""
        kept = []
        for columns in self._buffer:
            mask = columns[self.key] <= key_value
            if mask.any():
                kept.append({name: column[mask] for name, column in columns.items()})
        self._buffer = kept
        parts = list_parts(self.location)
        for part in reversed(parts):
            if part.first > key_value:
                self._remove_all_versions(part.seq)
        for part in parts:
            if part.first <= key_value < part.last:
                table = self._read_part(part)
                kept = table.filter(pc.less_equal(table.column(self.key), key_value))
                self._write_part(part.seq, kept, self.location.write_atomic)  # now: see class doc
                self.location.remove(part.name)
        remaining = list_parts(self.location)
        buffered = [int(columns[self.key][-1]) for columns in self._buffer]
        candidates = [p.last for p in remaining[-1:]] + buffered
        self._last_key = max(candidates) if candidates else None
        self._next_seq = max([p.seq + 1 for p in remaining[-1:]] + [self._next_seq])

    def _remove_all_versions(self, seq: int) -> None:
        for name in self.location.list():
            match = _PART.match(name)
            if match and int(match.group(1)) == seq:
                self.location.remove(name)

    def _write_part(self, seq: int, table: pa.Table, write: Callable[[str, bytes], None]) -> None:
        keys = table.column(self.key)
        first, last = pc.min(keys).as_py(), pc.max(keys).as_py()
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd", **self.parquet_options)
        write(f"part-{seq:08d}-{first:012d}-{last:012d}.parquet", sink.getvalue())

    def _read_part(self, part: PartFile) -> pa.Table:
        where = self.location.path(part.name)
        data = self.location.read_bytes(part.name)
        try:
            table = pq.read_table(pa.BufferReader(data))
        except (pa.ArrowInvalid, OSError) as exc:
            raise IntegrityError(f"part file {where} is truncated or corrupt ({len(data)} bytes): {exc}") from None
        if table.schema.names != self.schema.names:
            raise IntegrityError(f"part file {where} has columns {table.schema.names}, expected {self.schema.names}")
        keys = table.column(self.key)
        if table.num_rows == 0 or (
            pc.min(keys).as_py() != part.first or pc.max(keys).as_py() != part.last
        ):
            raise IntegrityError(
                f"part file {where} does not hold {self.key}s {part.first}..{part.last} as its name says"
            )
        return table.cast(self.schema)


def _arrow_column(values: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """A numpy column as Arrow, zero-copy for fixed-width numbers. `pa.array(ndarray)` imports
    pandas on first use, a cost a training run should not pay for its logs."""
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        numpy_type = np.dtype(arrow_type.to_pandas_dtype())
        if values.dtype.kind not in "iuf" or (values.dtype.kind == "f" and numpy_type.kind != "f"):
            raise TypeError(f"a {values.dtype} column cannot be stored as {arrow_type}")
        converted = np.ascontiguousarray(values.astype(numpy_type, copy=False))
        if converted.dtype.kind in "iu" and not np.array_equal(converted, values):
            raise ValueError(f"values out of range for {arrow_type}")
        return pa.Array.from_buffers(arrow_type, len(converted), [None, pa.py_buffer(converted)])
    return pa.array(values, type=arrow_type)
