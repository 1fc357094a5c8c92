"""Tensor bytes <-> stored bytes: byte-grouped zstd, with the encoding named in every blob.

Why byte-grouping: in a float tensor the sign/exponent byte of neighbouring values is nearly
constant while the low mantissa bytes are noise. Interleaved, zstd sees noise everywhere; grouped
(all byte-0s, then all byte-1s, ...) the exponent plane compresses ~3x and the noise planes are
passed through, which is where the ~1.17x on trained fp32 weights (vs ~1.08x plain zstd) comes from.

Every encoded blob starts with a one-line JSON header naming its encoding, item size and raw size,
so a blob is self-describing: new encodings can be added later and old blobs still decode, and the
same raw bytes reached again under another dtype still decode correctly. Byte order is the
machine's (little-endian on every platform torch supports).

Encoding groups into a reused scratch buffer and writes header and payload to the file apart.
Decoding decompresses into a reused scratch buffer and writes the tensor's bytes once, into fresh
memory that becomes the tensor. Fresh memory is the expensive part of a decode (page faults; on
virtual machines ~1 ms per MB, more than zstd itself), so the planes never get memory of their own.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

import numpy as np
import zstandard

from data_index.errors import IntegrityError, ZooError

BYTEGROUP_ZSTD = "bytegroup-zstd"
PLAIN_ZSTD = "zstd"
ENCODINGS = (BYTEGROUP_ZSTD, PLAIN_ZSTD)
DEFAULT_LEVEL = (
    1  # measured (benchmarks/bench_store.py): level 1 compresses weights as well as 3, 1.6x faster
)
# Level 1 with the longest minimum match and the smallest match finder: the exponent plane is
# low-entropy noise with few real repeats, so level 1 spent its time on short matches that
# Huffman-coded literals beat. Measured on trained fp32 weights: that plane encodes 3x faster and
# 12 % smaller; the whole blob 1.8x faster, same size (RESULTS.md). Decoders need nothing new.
FAST_PARAMETERS = {"min_match": 7, "hash_log": 6, "search_log": 1}
_MAX_HEADER = 256
_SCRATCH_KEPT = 32 << 20  # scratch buffers up to this size are kept for the next decode


def group_bytes(raw: bytes | memoryview, itemsize: int, *, out: bytearray | None = None) -> np.ndarray:
    """Planes of a little-endian array: plane k holds byte k of every element (uint8, 1-D),
    written into `out` (at least as long as raw) when given."""
    flat = np.frombuffer(raw, dtype=np.uint8)
    if itemsize == 1 or flat.size == 0:
        return flat
    if out is None:
        out = np.empty(flat.size, dtype=np.uint8)
    else:
        out = np.frombuffer(out, dtype=np.uint8, count=flat.size)
    planes = out.reshape(itemsize, -1)
    elements = flat.reshape(-1, itemsize)
    for k in range(itemsize):  # one strided read per plane: ~2.3x faster than a transposed copy
        planes[k] = elements[:, k]
    return out


def ungroup_bytes(planes: bytes | memoryview, itemsize: int, *, out=None) -> np.ndarray:
    """Inverse of group_bytes, into `out` (a writable buffer of the same length) or else fresh
    uint8 memory that torch can wrap without a copy.

    np.empty, not bytearray: bytearray zero-fills while holding the GIL, which serializes the page
    faults of parallel decodes (measured: 2 decode threads gained nothing over 1)."""
    flat = np.frombuffer(planes, dtype=np.uint8)
    out = np.empty(flat.size, dtype=np.uint8) if out is None else np.frombuffer(out, dtype=np.uint8)
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
    sink = io.BytesIO()
    encode_into(sink, raw, itemsize=itemsize, encoding=encoding, level=level)
    return sink.getvalue()


def encode_into(
    sink: BinaryIO,
    raw: bytes | memoryview,
    *,
    itemsize: int,
    encoding: str = BYTEGROUP_ZSTD,
    level: int = DEFAULT_LEVEL,
) -> None:
    """Write the encoded blob to a binary file: the header line, then the payload.

    The planes go through a reused scratch buffer and each thread keeps its compressor, so the only
    fresh memory is the compressed payload (see the module docstring on why fresh memory matters)."""
    if encoding not in ENCODINGS:
        raise ZooError(f"unknown encoding {encoding!r}; known encodings: {', '.join(ENCODINGS)}")
    nbytes = len(raw)
    if itemsize < 1 or nbytes % itemsize:
        raise ZooError(f"{nbytes} bytes is not a whole number of {itemsize}-byte elements")
    header = {"encoding": encoding, "itemsize": itemsize, "nbytes": nbytes}
    sink.write(json.dumps(header, separators=(",", ":")).encode() + b"\n")
    # One-shot compress, not stream_writer: the streaming path copies the input through the
    # context's window buffer and measured 1.2-1.25x slower.
    if encoding == PLAIN_ZSTD or itemsize == 1 or nbytes == 0:
        sink.write(_compressor(level).compress(memoryview(raw)))
        return
    with scratch_buffer(nbytes) as scratch:
        sink.write(_compressor(level).compress(group_bytes(raw, itemsize, out=scratch)))


def _compressor(level: int) -> zstandard.ZstdCompressor:
    """This thread's compressor for `level` (a compression context is costly to set up and not
    thread-safe). The default level uses FAST_PARAMETERS."""
    cache = _compressors.__dict__.setdefault("by_level", {})
    if level not in cache:
        params = (
            zstandard.ZstdCompressionParameters.from_level(level, **FAST_PARAMETERS)
            if level == DEFAULT_LEVEL
            else zstandard.ZstdCompressionParameters.from_level(level)
        )
        cache[level] = zstandard.ZstdCompressor(compression_params=params)
    return cache[level]


_compressors = threading.local()


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
    """Raw tensor bytes of an encoded blob (1-D uint8 array, fresh memory). Size is checked here;
    the hash is checked by blobs.py."""
    encoding, itemsize, nbytes, payload = _parse(blob)
    try:
        out = np.empty(nbytes, dtype=np.uint8)
    except MemoryError:
        raise IntegrityError(f"blob header claims {nbytes} bytes, more than this machine can hold") from None
    return _decode_payload(payload, encoding, itemsize, out)


def decode_into(blob: bytes | memoryview, out) -> np.ndarray:
    """Decode into `out`, a writable buffer exactly as long as the raw bytes; returns it as uint8."""
    encoding, itemsize, nbytes, payload = _parse(blob)
    out = np.frombuffer(out, dtype=np.uint8)
    if out.size != nbytes:
        raise IntegrityError(f"blob holds {nbytes} bytes, {out.size} were expected")
    return _decode_payload(payload, encoding, itemsize, out)


def _parse(blob: bytes | memoryview) -> tuple[str, int, int, memoryview]:
    """Encoding, item size, raw size and payload of a blob, with the header checked."""
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
    return encoding, itemsize, nbytes, payload


def _decode_payload(payload: memoryview, encoding: str, itemsize: int, out: np.ndarray) -> np.ndarray:
    if encoding == PLAIN_ZSTD or itemsize == 1:
        _decompress_into(payload, memoryview(out))
        return out
    try:
        scratch = _scratch.take(out.size)
    except MemoryError:
        raise IntegrityError(f"blob header claims {out.size} bytes, more than this machine can hold") from None
    try:
        body = _decompress_into(payload, memoryview(scratch)[: out.size])
        return ungroup_bytes(body, itemsize, out=out)
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
    """Reusable plane buffers, one per concurrent encode or decode (threads share the pool)."""

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


@contextmanager
def scratch_buffer(nbytes: int) -> Iterator[bytearray]:
    """A reused buffer of at least `nbytes` for the with-block (valid only inside it)."""
    buffer = _scratch.take(nbytes)
    try:
        yield buffer
    finally:
        _scratch.give_back(buffer)
