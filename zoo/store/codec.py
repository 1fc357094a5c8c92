"""Tensor bytes <-> stored bytes: byte-grouped zstd, with the encoding named in every blob.

Why byte-grouping: in a float tensor the sign/exponent byte of neighbouring values is nearly
constant while the low mantissa bytes are noise. Interleaved, zstd sees noise everywhere; grouped
(all byte-0s, then all byte-1s, ...) the exponent plane compresses well and the noise planes pass
through, so trained fp32 weights shrink more than with plain zstd (benchmarks/RESULTS.md).

Every encoded blob starts with a one-line JSON header naming its encoding, item size and raw size,
so a blob is self-describing: new encodings can be added later and old blobs still decode. Byte
order is the machine's (little-endian on every platform torch supports).
"""

from __future__ import annotations

import json

import numpy as np
import zstandard

from zoo_common.errors import IntegrityError, ZooError

BYTEGROUP_ZSTD = "bytegroup-zstd"
PLAIN_ZSTD = "zstd"
ENCODINGS = (BYTEGROUP_ZSTD, PLAIN_ZSTD)
DEFAULT_LEVEL = 1  # compresses weights as well as level 3, and faster (bench_store.py)
# Level 1 with a long minimum match and a small match finder: the exponent plane is low-entropy
# noise with few real repeats, where Huffman-coded literals beat short matches. Decoders need
# nothing new (RESULTS.md has the sizes and speeds).
FAST_PARAMETERS = {"min_match": 7, "hash_log": 6, "search_log": 1}
_MAX_HEADER = 256


def group_bytes(raw: bytes | memoryview, itemsize: int) -> np.ndarray:
    """Planes of a little-endian array: plane k holds byte k of every element (uint8, 1-D)."""
    flat = np.frombuffer(raw, dtype=np.uint8)
    if itemsize == 1 or flat.size == 0:
        return flat
    planes, elements = np.empty((itemsize, flat.size // itemsize), np.uint8), flat.reshape(-1, itemsize)
    for k in range(itemsize):  # one strided copy per plane: faster than a transposed copy
        planes[k] = elements[:, k]
    return planes.reshape(-1)


def ungroup_bytes(planes: bytes | memoryview, itemsize: int) -> np.ndarray:
    """Inverse of group_bytes: fresh uint8 memory that torch can wrap without a copy."""
    flat = np.frombuffer(planes, dtype=np.uint8)
    if itemsize == 1 or flat.size == 0:
        return flat.copy()
    out, stacked = np.empty(flat.size, np.uint8), flat.reshape(itemsize, -1)
    elements = out.reshape(-1, itemsize)
    for k in range(itemsize):  # one strided write per plane: faster than a transposed copy
        elements[:, k] = stacked[k]
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
    header = json.dumps({"encoding": encoding, "itemsize": itemsize, "nbytes": nbytes},
                        separators=(",", ":")).encode() + b"\n"
    grouped = encoding == BYTEGROUP_ZSTD and itemsize > 1 and nbytes > 0
    payload = group_bytes(raw, itemsize) if grouped else memoryview(raw)
    return header + _compressor(level).compress(payload)


def _compressor(level: int) -> zstandard.ZstdCompressor:
    params = (zstandard.ZstdCompressionParameters.from_level(level, **FAST_PARAMETERS)
              if level == DEFAULT_LEVEL else zstandard.ZstdCompressionParameters.from_level(level))
    return zstandard.ZstdCompressor(compression_params=params)


def read_header(blob: bytes | memoryview) -> dict:
    """The header of an encoded blob; IntegrityError when it is not one of ours."""
    head = bytes(blob[:_MAX_HEADER])
    end = head.find(b"\n")
    try:
        if end < 0:
            raise ValueError("no header line")
        header = json.loads(head[:end])
        if not isinstance(header, dict) or {"encoding", "itemsize", "nbytes"} - header.keys():
            raise ValueError("incomplete header")
    except ValueError as exc:
        raise IntegrityError(f"damaged blob header ({exc})") from None
    header["offset"] = end + 1
    return header


def decode(blob: bytes | memoryview) -> np.ndarray:
    """Raw tensor bytes of an encoded blob (1-D uint8 array, fresh memory). The size is checked
    here; the hash is checked by blobs.py."""
    header = read_header(blob)
    encoding, itemsize, nbytes = header["encoding"], header["itemsize"], header["nbytes"]
    if encoding not in ENCODINGS:
        raise ZooError(
            f"blob uses encoding {encoding!r}, which this version of Model Zoo cannot "
            f"read (known: {', '.join(ENCODINGS)}); upgrade model-zoo"
        )
    if (not isinstance(itemsize, int) or not isinstance(nbytes, int) or itemsize < 1 or nbytes < 0
            or nbytes % itemsize):
        raise IntegrityError(f"damaged blob header (itemsize {itemsize!r}, nbytes {nbytes!r})")
    payload = memoryview(blob)[header["offset"]:]
    try:
        declared = zstandard.frame_content_size(payload)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"damaged blob payload ({exc})") from None
    if declared not in (nbytes, -1):  # checked before memory is sized from an untrusted header
        raise IntegrityError(f"blob payload holds {declared} bytes, header says {nbytes}")
    try:
        # max_output_size bounds a frame that does not declare its size; one byte more tells
        # "too long" apart from "exactly right"
        body = zstandard.ZstdDecompressor().decompress(payload, max_output_size=nbytes + 1)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"damaged blob payload ({exc})") from None
    except MemoryError:
        raise IntegrityError(f"blob header claims {nbytes} bytes, more than this machine can hold") from None
    if len(body) != nbytes:
        raise IntegrityError(f"blob decodes to {len(body)} bytes, header says {nbytes}")
    if encoding == PLAIN_ZSTD or itemsize == 1:
        return np.frombuffer(bytearray(body), dtype=np.uint8)
    return ungroup_bytes(body, itemsize)
