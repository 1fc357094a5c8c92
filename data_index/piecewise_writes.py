"""Files written into the page cache in pieces of at most 1 MiB.

Why: on this project's machines (Linux 6.18, ext4) one write() of 2 MiB or more into a new file
costs six to eight times what the same bytes cost in 1 MiB writes: 21 MB took 60-65 ms in one
call or in 2-4 MiB pieces, 7.6-9.7 ms in 1 MiB pieces (benchmarks/bench_file_writes.py prints them
side by side; results in benchmarks/RESULTS.md). Presumably the kernel serves writes that large
with 2 MiB page-cache folios, which these virtual machines find and fill slowly. Writes around the
page cache (direct_io.py) do not show the effect. Every buffered write of a possibly large file (a
snapshot's model.safetensors, a pulled blob, an exported tensor) goes through here; small files
(JSON, Parquet) need not.
"""
from __future__ import annotations

import io
import os

WRITE_PIECE = 1 << 20


def write_all(fd: int, data, offset: int | None = None) -> None:
    """Write all of `data` (any contiguous buffer) to the descriptor, at `offset` (pwrite) or at
    the file position, in pieces of at most WRITE_PIECE bytes."""
    view = memoryview(data).cast("B")
    while len(view):
        piece = view[:WRITE_PIECE]
        written = os.write(fd, piece) if offset is None else os.pwrite(fd, piece, offset)
        view = view[written:]
        if offset is not None:
            offset += written


class PiecewiseWriter(io.BufferedWriter):
    """A binary file whose large writes reach the kernel in pieces (for code that writes to a file
    object, like the codec's encoder)."""

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        for start in range(0, len(view), WRITE_PIECE):
            super().write(view[start:start + WRITE_PIECE])
        return len(view)


def open_piecewise(path: str | os.PathLike, mode: str = "wb") -> PiecewiseWriter:
    """`open(path, mode)` for writing bytes ("wb", "xb" or "ab"), with PiecewiseWriter's writes."""
    if mode not in ("wb", "xb", "ab"):
        raise ValueError(f"open_piecewise writes bytes: mode 'wb', 'xb' or 'ab', not {mode!r}")
    return PiecewiseWriter(io.FileIO(path, mode[0]))
