"""Files written around the page cache: the bytes on disk are exactly the bytes given, at any size
(O_DIRECT writes whole blocks and the file is cut back), on filesystems that refuse O_DIRECT too,
and a staged write leaves nothing on disk before its commit."""

from __future__ import annotations

import os

import pytest

from data_index.direct_io import BLOCK, AlignedBuffer, write_new_file
from data_index.fsio import open_location

SIZES = [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 17, (1 << 20) + 3]


def _content(size: int) -> bytes:
    return bytes((i * 131 + size) % 251 for i in range(size))


def _buffer_of(data: bytes, pieces: int = 3) -> AlignedBuffer:
    buffer = AlignedBuffer()
    step = max(1, len(data) // pieces)
    for start in range(0, len(data), step):  # several writes: the buffer grows across pool sizes
        buffer.write(data[start:start + step])
    return buffer


@pytest.mark.parametrize("size", SIZES)
def test_file_holds_exactly_the_bytes_written(tmp_path, size):
    data = _content(size)
    buffer = _buffer_of(data)
    path = tmp_path / "f"
    write_new_file(str(path), buffer)
    buffer.release()
    assert path.read_bytes() == data


def test_a_filesystem_without_o_direct_gets_an_ordinary_write():
    if not os.path.isdir("/dev/shm") or not os.access("/dev/shm", os.W_OK):
        pytest.skip("no writable tmpfs at /dev/shm on this machine")
    path = f"/dev/shm/zoo-direct-io-test-{os.getpid()}"
    data = _content(BLOCK + 5)
    try:
        write_new_file(path, _buffer_of(data))  # tmpfs refuses O_DIRECT with EINVAL
        with open(path, "rb") as handle:
            assert handle.read() == data
    finally:
        if os.path.exists(path):
            os.unlink(path)


def test_an_existing_file_is_never_overwritten(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"kept")
    with pytest.raises(FileExistsError):
        write_new_file(str(path), _buffer_of(b"new bytes"))
    assert path.read_bytes() == b"kept"


def test_staged_bypassing_write_touches_the_disk_only_at_commit(tmp_path):
    location = open_location(tmp_path / "store")
    data = _content(2 * BLOCK + 9)
    staged = location.write_staged("blobs/aa/x", lambda sink: (sink.write(data[:5]), sink.write(data[5:])),
                                   bypass_cache=True)
    assert not (tmp_path / "store").exists()  # nothing on disk yet, not even a temporary file
    location.commit_staged([staged])
    assert (tmp_path / "store" / "blobs" / "aa" / "x").read_bytes() == data
    assert not list((tmp_path / "store").rglob(".tmp-*"))

    discarded = location.write_staged("blobs/aa/y", data, bypass_cache=True)
    discarded.discard()
    assert not (tmp_path / "store" / "blobs" / "aa" / "y").exists()
