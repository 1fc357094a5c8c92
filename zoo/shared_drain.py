"""Tasks drained in order by pool threads and, once it is free, by the caller itself.

Why: a cold `zoo.load` has Python work of its own (tokenizer, empty model, snapshot files) while the
blobs decode. Python work holds the GIL, and each GIL-free step of a decode (read, zstd, hashing, a
write) must take the GIL back before it goes on: beside a Python-bound thread, a decode thread waits
up to the interpreter's switch interval (5 ms) every time (measured: a 4 MB zstd decode took 6.7 ms
instead of 0.9 beside a Python loop). With every pool thread decoding beside the caller's Python
work, the 21 MB model's blobs took 34 ms, two cores about a third idle. So the pool lends fewer
threads (one on two cores) while the caller does its Python work, then the caller takes tasks too:
as many threads as cores, none of them waiting behind Python (cold load 46 -> 39 ms, benchmarks/
RESULTS.md). A task taken from a list also costs less than a future per task (an inline bias is
smaller than its future).
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait


class SharedDrain:
    """`tasks` run in order, each once, by up to `helpers` threads of `pool` from now on and by the
    caller from `finish()` on. The first error stops the handing out of further tasks."""

    def __init__(self, pool: ThreadPoolExecutor, tasks: Sequence[Callable[[], object]], *,
                 helpers: int) -> None:
        self._tasks = list(tasks)
        self._results: list[object] = [None] * len(self._tasks)
        self._errors: dict[int, BaseException] = {}
        self._next = 0
        self._stopped = False
        self._lock = threading.Lock()
        self._helpers = [pool.submit(self._drain) for _ in range(max(0, min(helpers, len(self._tasks))))]

    def finish(self) -> list:
        """Take tasks in this thread until none is left, then wait for the helpers. Returns the
        results in task order, or raises the first error in task order (an interrupt first), only
        once no task is running: a caller that then closes what the tasks write into must not
        have one still going."""
        try:
            self._drain()
        finally:
            self._settle()
        if self._errors:
            errors = [self._errors[i] for i in sorted(self._errors)]
            raise next((e for e in errors if not isinstance(e, Exception)), errors[0])
        return self._results

    def cancel(self) -> None:
        """Hand out no more tasks and wait for the running ones (for a caller whose own work
        failed; their errors are dropped)."""
        self._settle()

    def _settle(self) -> None:
        """Stop handing out tasks and return once no helper runs one. Helpers the pool has not
        started yet (its threads busy elsewhere) are called off, not waited for; an interrupt
        (Ctrl-C) that arrives meanwhile is raised only after the running tasks end."""
        with self._lock:
            self._stopped = True
        running = [helper for helper in self._helpers if not helper.cancel()]
        interrupted = None
        while running:
            try:
                wait(running)
                running = []
            except BaseException as exc:  # noqa: BLE001 (re-raised once the helpers have ended)
                interrupted = interrupted or exc
                running = [helper for helper in running if not helper.done()]
        if interrupted is not None:
            raise interrupted

    def _drain(self) -> None:
        while True:
            with self._lock:
                if self._stopped or self._next >= len(self._tasks):
                    return
                index = self._next
                self._next += 1
            try:
                self._results[index] = self._tasks[index]()
            except BaseException as exc:  # noqa: BLE001 (raised by finish once all have settled)
                with self._lock:
                    self._errors[index] = exc
                    self._stopped = True
