"""The training loop's writes, in order, on a thread of their own.

Why a thread: a commit (blob files, fsync, rename, manifests) is mostly waiting on the disk, and so
is a log part's fsync; the training thread only hands them over.
Why a queue: with dense early checkpoints (steps 1, 2, 4, 8, ...) a step's write would otherwise
wait for the previous commit.
Jobs run one at a time in submission order, so manifests land in step order and a keyframe lands
after the index and metrics parts submitted before it. After a job fails, the jobs queued behind it
are skipped (a later checkpoint never lands after an earlier one failed), and the first error is
raised to the training thread at its next submit, `drain` or `close`.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

# Checkpoint or keyframe commits that may wait behind the one being written: the bound on the queue.
_QUEUED_LARGE = 1
WRITER_THREAD = "zoo-writer"  # its thread's name prefix (benchmarks find the thread by it)


class BackgroundWriter:
    """`submit(job)` queues a write; `drain()` waits for all of them; `close()` drains and stops."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=WRITER_THREAD)
        self._pending: deque[tuple[Future, bool]] = deque()  # (future, small) in submission order
        self._error: BaseException | None = None  # the first job's failure; later jobs skip
        self._reported = False

    def submit(self, job: Callable[[], object], *, small: bool = False,
               on_skip: Callable[[], object] | None = None) -> None:
        """Queue `job`. A large one (checkpoint, keyframe) first waits until at most
        _QUEUED_LARGE others wait behind the running one; a small one (a log part) never waits.
        `on_skip` runs instead of the job when an earlier job failed (to release what it holds)."""
        self._collect(block=False)
        if not small:
            while sum(1 for _, is_small in self._pending if not is_small) > _QUEUED_LARGE:
                self._collect(block=True, count=1)
        if self._error is not None:  # reported before, and the caller went on submitting
            raise self._error
        self._pending.append((self._pool.submit(self._run, job, on_skip), small))

    @property
    def idle(self) -> bool:
        """No queued write is running or waiting. Benchmarks read it to keep the bare loop they
        interleave with training off the writer's time."""
        return all(future.done() for future, _ in self._pending)

    def drain(self) -> None:
        """Wait for every queued job; re-raise the first error (once)."""
        self._collect(block=True)

    def close(self) -> None:
        try:
            self.drain()
        finally:
            self._pool.shutdown(wait=True)

    def _run(self, job, on_skip) -> None:
        if self._error is not None:
            if on_skip is not None:
                on_skip()
            return
        try:
            job()
        except BaseException as exc:
            self._error = exc
            raise

    def _collect(self, *, block: bool, count: int | None = None) -> None:
        """Take finished jobs off the queue, oldest first (all of them, or `count`, waiting for
        them when `block`); then raise the first job's error if it was not raised before."""
        taken = 0
        while self._pending and (count is None or taken < count):
            future, _ = self._pending[0]
            if not block and not future.done():
                break
            self._pending.popleft()
            taken += 1
            future.exception()  # waits; the error itself is kept in self._error
        if self._error is not None and not self._reported:
            self._reported = True
            raise self._error
