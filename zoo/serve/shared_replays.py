"""Replays for `zoo serve`: shared, bounded, and never inside a request.

A page at a step that was not stored needs that step replayed from the keyframe before it: up to
hundreds of training steps, seconds to minutes. Done inside the request, two visitors replayed
the same step twice and the browser showed nothing until it was done. Here a page asks
`SharedReplays.require(run, step)` before it reads weights:

- stored, or replayed and cached already: it returns, and the page reads the weights at once;
- otherwise the step's replay is queued (once: every request for the same (run, step) shares
  it) and, unless it finishes within `wait_s` (a short replay: no waiting page flashes by),
  `Replaying` is raised; app.py answers it at once with a page that shows the progress and
  reloads itself until the step is ready.

One worker thread runs the replays, one after another: torch's thread count is process-wide and a
replay is exact only at the run's recorded count, so two replays at once would set it under each
other (and a replay uses the cores it was recorded with: more at once would only share them). The
worker is a daemon thread, so stopping the server never waits for a replay; the cache's folders
are written whole or not at all (snapshot_folder), so a replay cut short leaves nothing behind.
The lock here guards the table of replays only, never a replay and never a stored step's page.
"""
from __future__ import annotations

import itertools
import queue
import threading
import time
from concurrent.futures import Future, wait
from dataclasses import dataclass, field

from zoo.engine.step_replay import replay_start
from zoo.registry.reachable import is_materialized, materialize_step
from zoo.registry.snapshots import check_step
from zoo.store.lineage import weights_owner
from zoo.store.run_store import RunStore


@dataclass
class Replay:
    """One step being replayed for the server, and how far it is (read by the waiting page)."""

    run: RunStore  # the run whose weights these are (a branch's parent before its branch point)
    step: int
    keyframe: int
    order: int  # queued as the order-th replay of this server
    done: int = 0  # training steps replayed so far
    started: float | None = None  # time.monotonic() when the worker took it
    future: Future = field(default_factory=Future)

    @property
    def total(self) -> int:
        return self.step - self.keyframe

    def advanced(self, done: int, total: int) -> None:
        """materialize_step's on_step: one more training step replayed."""
        self.done = done


class Replaying(Exception):
    """The step's weights are being replayed (not an error): answered with the waiting page."""

    def __init__(self, replay: Replay, ahead: int) -> None:
        super().__init__(f"replaying step {replay.step} of {replay.run.run_id.key} from "
                         f"keyframe {replay.keyframe}")
        self.replay = replay
        self.ahead = ahead  # replays queued before it, still to finish


class SharedReplays:
    """The server's replays: one per (run, step) however many ask, one at a time, off requests."""

    def __init__(self, *, wait_s: float = 1.0) -> None:
        self.wait_s = wait_s
        self._lock = threading.Lock()
        self._replays: dict[tuple[str, str, int], Replay] = {}
        self._queue: queue.SimpleQueue[Replay] = queue.SimpleQueue()
        self._order = itertools.count()
        self._worker: threading.Thread | None = None

    def require(self, run: RunStore, step: int) -> None:
        """Return once `step` of `run` can be read without replaying; raise Replaying while its
        replay runs, the replay's own error if it failed, and StepNotFoundError (listing what
        exists) for a step that no replay can reach."""
        owner = weights_owner(run, step)
        stored = owner.checkpoint_steps()
        check_step(owner, step, stored)
        if step in stored:
            return
        replay = self._replay_of(owner, step)
        if replay is None:
            return
        wait([replay.future], timeout=self.wait_s)
        if not replay.future.done():
            raise Replaying(replay, self._ahead(replay))
        if replay.future.exception() is not None:
            self._forget(replay)  # reported once; the next request for the step tries again
        replay.future.result()  # the replay's error, if it failed

    def running(self) -> list[Replay]:
        """The replays queued or running now, in their order."""
        with self._lock:
            return sorted((r for r in self._replays.values() if not r.future.done()),
                          key=lambda r: r.order)

    def _replay_of(self, run: RunStore, step: int) -> Replay | None:
        """The replay making (run, step): the one under way, else a new one, else None when the
        step is cached. Checked and queued under the lock, so two requests never queue two."""
        key = (run.store.url, run.run_id.key, step)
        with self._lock:
            replay = self._replays.get(key)
            if replay is not None:
                return replay
            if is_materialized(run, step):
                return None
            replay = Replay(run, step, replay_start(run, step), next(self._order))
            self._replays[key] = replay
            self._queue.put(replay)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="zoo-serve-replay",
                                                daemon=True)
                self._worker.start()
            return replay

    def _work(self) -> None:
        while True:
            replay = self._queue.get()
            replay.started = time.monotonic()
            try:
                materialize_step(replay.run, replay.step, on_step=replay.advanced)
            except Exception as exc:  # noqa: BLE001  kept for the request that asks next
                replay.future.set_exception(exc)
                continue
            self._forget(replay)  # the cached folder is the result from now on
            replay.future.set_result(None)

    def _forget(self, replay: Replay) -> None:
        with self._lock:
            key = (replay.run.store.url, replay.run.run_id.key, replay.step)
            if self._replays.get(key) is replay:
                del self._replays[key]

    def _ahead(self, replay: Replay) -> int:
        with self._lock:
            return sum(1 for r in self._replays.values()
                       if r.order < replay.order and not r.future.done())
