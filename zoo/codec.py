"""Tensor bytes <-> stored bytes: byte-grouped zstd, with the encoding named in every blob.

Why byte-grouping: in a float tensor the sign/exponent byte of neighbouring values is nearly
constant while the low mantissa bytes are noise. Interleaved, zstd sees noise everywhere; grouped
(all byte-0s, then all byte-1s, ...) the exponent plane compresses ~3x and the noise planes are
passed through, which is where the ~1.17x on trained fp32 weights (vs ~1.08x plain zstd) comes from.

Every encoded blob starts with a one-line JSON header naming its encoding, item size and raw size,
so a blob is self-describing: new encodings can be added later and old blobs still decode, and the
same raw bytes reached again under another dtype still decode correctly. Byte order is the
machine's (little-endian on every platform torch supports).

Decoding decompresses into a reused scratch buffer and writes the tensor's bytes once, into fresh
memory that becomes the tensor. Fresh memory is the expensive part of a decode (page faults; on
virtual machines ~1 ms per MB, more than zstd itself), so the planes never get memory of their own.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import zstandard

from data_index.errors import IntegrityError, ZooError

BYTEGROUP_ZSTD = "bytegroup-zstd"
PLAIN_ZSTD = "zstd"
ENCODINGS = (BYTEGROUP_ZSTD, PLAIN_ZSTD)
DEFAULT_LEVEL = (
    1  # measured (benchmarks/bench_store.py): level 1 compresses weights as well as 3, 1.6x faster
)
_MAX_HEADER = 256
_SCRATCH_KEPT = 32 << 20  # scratch buffers up to this size are kept for the next decode


def group_bytes(raw: bytes | memoryview, itemsize: int) -> np.ndarray:
    """Planes of a little-endian array: plane k holds byte k of every element (uint8, 1-D)."""
    flat = np.frombuffer(raw, dtype=np.uint8)
    if itemsize == 1 or flat.size == 0:
        return flat
    out = np.empty(flat.size, dtype=np.uint8)
    planes = out.reshape(itemsize, -1)
    elements = flat.reshape(-1, itemsize)
    for k in range(itemsize):  # one strided read per plane: ~2.3x faster than a transposed copy
        planes[k] = elements[:, k]
    return out


def ungroup_bytes(planes: bytes | memoryview, itemsize: int) -> np.ndarray:
    """Inverse of group_bytes, into fresh uint8 memory that torch can wrap without a copy.

    np.empty, not bytearray: bytearray zero-fills while holding the GIL, which serializes the page
    faults of parallel decodes (measured: 2 decode threads gained nothing over 1)."""
    flat = np.frombuffer(planes, dtype=np.uint8)
    out = np.empty(flat.size, dtype=np.uint8)
    if itemsize == 1 or flat.size == 0:
        out[:] = flat
        return out
    view = out.reshape(-1, itemsize)
    stacked = flat.reshape(itemsize, -1)
    for k in range(itemsize):  # column writes beat a transposed copy ~3.5x (measured)
        view[:, k] = stacked[k]
    return out


def encode(
    raw: bytes | memoryview,
    *,
    itemsize: int,
    encoding: str = BYTEGROUP_ZSTD,
    level: int = DEFAULT_LEVEL,
) -> bytes:
    """Encode raw tensor bytes into a self-describing blob (header line + payload)."""
    if encoding not in ENCODINGS:
        raise ZooError(f"unknown encoding {encoding!r}; known encodings: {', '.join(ENCODINGS)}")
    nbytes = len(raw)
    if itemsize < 1 or nbytes % itemsize:
        raise ZooError(f"{nbytes} bytes is not a whole number of {itemsize}-byte elements")
    body = (
        group_bytes(raw, itemsize) if encoding == BYTEGROUP_ZSTD else np.frombuffer(raw, np.uint8)
    )
    payload = zstandard.ZstdCompressor(level=level).compress(body.data)
    header = (
        json.dumps(
            {"encoding": encoding, "itemsize": itemsize, "nbytes": nbytes}, separators=(",", ":")
        ).encode()
        + b"\n"
    )
    return header + payload


def read_header(blob: bytes) -> dict:
    """The header of an encoded blob; IntegrityError when it is not one of ours."""
    end = blob.find(b"\n", 0, _MAX_HEADER)
    try:
        if end < 0:
            raise ValueError("no header line")
        header = json.loads(blob[:end])
        if not isinstance(header, dict) or {"encoding", "itemsize", "nbytes"} - header.keys():
            raise ValueError("incomplete header")
    except ValueError as exc:
        raise IntegrityError(f"damaged blob header ({exc})") from None
    header["offset"] = end + 1
    return header


def decode(blob: bytes) -> np.ndarray:
    """Raw tensor bytes of an encoded blob (1-D uint8 array). Size is checked here; the hash is
    checked by blobs.py."""
    header = read_header(blob)
    encoding, itemsize, nbytes = header["encoding"], header["itemsize"], header["nbytes"]
    if encoding not in ENCODINGS:
        raise ZooError(
            f"blob uses encoding {encoding!r}, which this version of Model Zoo cannot "
            f"read (known: {', '.join(ENCODINGS)}); upgrade model-zoo"
        )
    if not isinstance(itemsize, int) or not isinstance(nbytes, int) or itemsize < 1 or nbytes < 0:
        raise IntegrityError(f"damaged blob header (itemsize {itemsize!r}, nbytes {nbytes!r})")
    payload = memoryview(blob)[header["offset"] :]
    try:
        declared = zstandard.frame_content_size(payload)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"damaged blob payload ({exc})") from None
    if declared not in (nbytes, -1):  # checked before memory is sized from an untrusted header
        raise IntegrityError(f"blob payload holds {declared} bytes, header says {nbytes}")
    try:
        scratch = _scratch.take(nbytes)
    except MemoryError:
        raise IntegrityError(f"blob header claims {nbytes} bytes, more than this machine can hold") from None
    try:
        body = _decompress_into(payload, memoryview(scratch)[:nbytes])
        return ungroup_bytes(body, itemsize if encoding == BYTEGROUP_ZSTD else 1)
    finally:
        _scratch.give_back(scratch)


def _decompress_into(payload: memoryview, out: memoryview) -> memoryview:
    """Decompress exactly len(out) bytes into `out`; IntegrityError if the payload has more or less."""
    filled = 0
    try:
        with zstandard.ZstdDecompressor().stream_reader(payload) as reader:
            while filled < len(out):
                got = reader.readinto(out[filled:])
                if not got:
                    break
                filled += got
            extra = len(reader.read(1))
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"damaged blob payload ({exc})") from None
    if filled != len(out) or extra:
        more = "more than" if extra else f"{filled},"
        raise IntegrityError(f"blob decodes to {more} bytes, header says {len(out)}")
    return out


class _ScratchPool:
    """Reusable decompression buffers, one per concurrent decode (threads share the pool)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: list[bytearray] = []

    def take(self, nbytes: int) -> bytearray:
        with self._lock:
            for i, buffer in enumerate(self._free):
                if len(buffer) >= nbytes:
                    return self._free.pop(i)
        return bytearray(nbytes)

    def give_back(self, buffer: bytearray) -> None:
        if len(buffer) <= _SCRATCH_KEPT:
            with self._lock:
                self._free.append(buffer)
                self._free.sort(key=len)
                del self._free[:-8]  # at most 8 kept (the largest), <= 256 MiB


_scratch = _ScratchPool()
