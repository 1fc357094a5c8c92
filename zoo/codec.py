"""Tensor bytes <-> stored bytes: byte-grouped zstd, with the encoding named in every blob.

Why byte-grouping: in a float tensor the sign/exponent byte of neighbouring values is nearly
constant while the low mantissa bytes are noise. Interleaved, zstd sees noise everywhere; grouped
(all byte-0s, then all byte-1s, ...) the exponent plane compresses ~3x and the noise planes are
passed through, which is where the ~1.17x on trained fp32 weights (vs ~1.08x plain zstd) comes from.

Every encoded blob starts with a one-line JSON header naming its encoding, item size and raw size,
so a blob is self-describing: new encodings can be added later and old blobs still decode, and the
same raw bytes reached again under another dtype still decode correctly. Byte order is the
machine's (little-endian on every platform torch supports).
"""

from __future__ import annotations

import json

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


def group_bytes(raw: bytes | memoryview, itemsize: int) -> np.ndarray:
    """Planes of a little-endian array: plane k holds byte k of every element (uint8, 1-D)."""
    flat = np.frombuffer(raw, dtype=np.uint8)
    if itemsize == 1 or flat.size == 0:
        return flat
    return np.ascontiguousarray(flat.reshape(-1, itemsize).T).reshape(-1)


def ungroup_bytes(planes: bytes | memoryview, itemsize: int) -> bytearray:
    """Inverse of group_bytes; returns a writable buffer (torch can wrap it without a copy)."""
    flat = np.frombuffer(planes, dtype=np.uint8)
    out = bytearray(flat.size)
    if itemsize == 1 or flat.size == 0:
        np.frombuffer(out, dtype=np.uint8)[:] = flat
        return out
    view = np.frombuffer(out, dtype=np.uint8).reshape(-1, itemsize)
    stacked = flat.reshape(itemsize, -1)
    for k in range(itemsize):  # column writes beat a transposed copy ~1.5x (measured)
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


def decode(blob: bytes) -> bytearray:
    """Raw tensor bytes of an encoded blob. Size is checked here; the hash is checked by blobs.py."""
    header = read_header(blob)
    encoding, itemsize, nbytes = header["encoding"], header["itemsize"], header["nbytes"]
    if encoding not in ENCODINGS:
        raise ZooError(
            f"blob uses encoding {encoding!r}, which this version of Model Zoo cannot "
            f"read (known: {', '.join(ENCODINGS)}); upgrade model-zoo"
        )
    payload = memoryview(blob)[header["offset"] :]
    try:
        body = zstandard.ZstdDecompressor().decompress(payload, max_output_size=max(nbytes, 1))
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"damaged blob payload ({exc})") from None
    if len(body) != nbytes:
        raise IntegrityError(f"blob decodes to {len(body)} bytes, header says {nbytes}")
    if encoding == BYTEGROUP_ZSTD:
        return ungroup_bytes(body, itemsize)
    return bytearray(body)
