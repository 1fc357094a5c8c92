"""Files written around the page cache (O_DIRECT), from page-aligned memory.

Why: a writer that never reads its files back (a training loop's checkpoints) gains nothing from
the page cache and pays for it: every page written is a page the kernel must find, copy into,
write back and later evict, on the CPU cores training runs on. On this project's 2-core virtual
machines that was the largest part of a checkpoint write (benchmarks/RESULTS.md). O_DIRECT hands
the disk our own buffer instead. It needs the buffer's address and length aligned to the disk's
block size, hence `AlignedBuffer`; filesystems without O_DIRECT (tmpfs, some network mounts) get
an ordinary write.
"""
from __future__ import annotations

import errno
import mmap
import os
import threading

from data_index.piecewise_writes import open_piecewise

BLOCK = 4096  # the largest logical block size in common use; multiples of it suit them all
_POOL_KEPT = 256 << 20  # bytes of freed buffers kept for reuse
_unsupported_devices: set[int] = set()  # filesystems that refused O_DIRECT once


class AlignedBuffer:
    """A growing in-memory file (write() like a binary file) on page-aligned memory, taken from
    and given back to a pool: fresh memory costs page faults, reused memory does not."""

    def __init__(self) -> None:
        self.memory = _pool.take(1 << 16)
        self.size = 0

    def write(self, data) -> int:
        data = memoryview(data).cast("B")
        end = self.size + len(data)
        if end > len(self.memory):
            grown = _pool.take(max(end, 2 * len(self.memory)))
            grown[: self.size] = self.memory[: self.size]
            _pool.give_back(self.memory)
            self.memory = grown
        self.memory[self.size:end] = data
        self.size = end
        return len(data)

    def release(self) -> None:
        if self.memory is not None:
            _pool.give_back(self.memory)
            self.memory = None


def write_new_file(path: str, content: AlignedBuffer, *, sync: bool = True) -> None:
    """Create `path` (it must not exist) holding content's bytes, fsynced when `sync`. O_DIRECT
    where the filesystem supports it, an ordinary buffered write elsewhere."""
    device = os.stat(os.path.dirname(path) or ".").st_dev
    flag = getattr(os, "O_DIRECT", 0)
    fd = None
    if flag and device not in _unsupported_devices:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | flag, 0o644)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            _unsupported_devices.add(device)
    if fd is None:
        with open_piecewise(path, "xb") as handle:
            handle.write(memoryview(content.memory)[: content.size])
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
        return
    try:
        padded = -(-content.size // BLOCK) * BLOCK  # <= len(memory): pool sizes are block multiples
        view, done = memoryview(content.memory)[:padded], 0
        while done < padded:
            done += os.write(fd, view[done:])
        if padded != content.size:
            os.ftruncate(fd, content.size)
        if sync:
            os.fsync(fd)  # O_DIRECT skips the page cache, not the disk's own cache or the metadata
    finally:
        os.close(fd)


class _Pool:
    """Freed aligned buffers by size (powers of two, at least one page), thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: dict[int, list[mmap.mmap]] = {}
        self._kept = 0

    def take(self, nbytes: int) -> mmap.mmap:
        size = max(BLOCK, 1 << (max(nbytes, 1) - 1).bit_length())
        with self._lock:
            free = self._free.get(size)
            if free:
                self._kept -= size
                return free.pop()
        return mmap.mmap(-1, size)

    def give_back(self, memory: mmap.mmap) -> None:
        with self._lock:
            if self._kept + len(memory) <= _POOL_KEPT:
                self._free.setdefault(len(memory), []).append(memory)
                self._kept += len(memory)
                return
        memory.close()


_pool = _Pool()
