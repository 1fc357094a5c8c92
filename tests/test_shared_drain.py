"""SharedDrain: tasks shared by pool threads and the caller (zoo/shared_drain.py)."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from zoo.shared_drain import SharedDrain


@pytest.fixture()
def pool():
    with ThreadPoolExecutor(2) as executor:
        yield executor


def test_every_task_runs_once_and_results_keep_task_order(pool):
    ran, lock = [], threading.Lock()

    def task(i):
        def run():
            with lock:
                ran.append(i)
            return i * i
        return run

    drain = SharedDrain(pool, [task(i) for i in range(50)], helpers=1)
    assert drain.finish() == [i * i for i in range(50)]
    assert sorted(ran) == list(range(50))


def test_helpers_work_before_the_caller_finishes_and_the_caller_takes_the_rest(pool):
    """The pool starts at once (the cold load's Python work runs meanwhile); with no helper the
    caller alone runs everything, so a machine with one core (no helper) still loads."""
    first_done = threading.Event()
    drain = SharedDrain(pool, [first_done.set, lambda: threading.current_thread().name], helpers=1)
    assert first_done.wait(5)
    assert drain.finish()[0] is None

    callers = SharedDrain(pool, [lambda: threading.current_thread().name] * 3, helpers=0).finish()
    assert callers == [threading.current_thread().name] * 3


def test_an_error_is_raised_only_after_the_running_tasks_ended_and_stops_the_rest(pool):
    """Task 0 is slow, task 1 fails at once: whichever thread runs task 1, finish must wait for
    task 0 (its writer may still be writing), raise task 1's error, and start no later task."""
    ended, later = [], []

    def slow():
        time.sleep(0.3)
        ended.append(0)

    def fail():
        raise ValueError("task 1 failed")

    drain = SharedDrain(pool, [slow, fail] + [lambda: later.append(1)] * 5, helpers=1)
    with pytest.raises(ValueError, match="task 1 failed"):
        drain.finish()
    assert ended == [0]
    assert later == []


def test_the_first_error_in_task_order_is_raised_and_an_interrupt_goes_first(pool):
    gate = threading.Barrier(2, timeout=5)

    def fail(exc):
        def run():
            gate.wait()  # both tasks fail, one on each thread
            raise exc
        return run

    with pytest.raises(ValueError, match="first"):
        SharedDrain(pool, [fail(ValueError("first")), fail(OSError("second"))], helpers=1).finish()
    gate.reset()
    with pytest.raises(KeyboardInterrupt):
        SharedDrain(pool, [fail(ValueError("first")), fail(KeyboardInterrupt())], helpers=1).finish()


def test_cancel_hands_out_nothing_more_and_waits_for_the_running_task(pool):
    started, ended = threading.Event(), []

    def slow():
        started.set()
        time.sleep(0.3)
        ended.append(0)

    never = []
    drain = SharedDrain(pool, [slow] + [lambda: never.append(1)] * 5, helpers=1)
    assert started.wait(5)
    drain.cancel()
    assert ended == [0]
    assert never == []


def test_helpers_the_busy_pool_never_started_are_not_waited_for():
    """When other work holds every pool thread, the caller runs all tasks itself and returns at
    once: it does not wait for helpers that would find nothing left (and a caller that is itself
    a pool thread cannot deadlock on them)."""
    with ThreadPoolExecutor(1) as busy_pool:
        release = threading.Event()
        busy_pool.submit(release.wait, 10)
        started = time.perf_counter()
        assert SharedDrain(busy_pool, [lambda: 1] * 4, helpers=1).finish() == [1] * 4
        assert time.perf_counter() - started < 2
        release.set()


def test_an_interrupt_while_waiting_for_a_helper_waits_for_it_first(pool, monkeypatch):
    """Ctrl-C in the caller while a helper is mid-task: finish raises it only once that task has
    ended, so the caller's cleanup (closing the file the task writes into) comes after it."""
    from zoo import shared_drain

    helper_started, ended = threading.Event(), []

    def slow():
        helper_started.set()
        time.sleep(0.3)
        ended.append(0)

    real_wait, interrupted = shared_drain.wait, []

    def interrupted_wait(futures):
        if not interrupted:
            interrupted.append(1)
            raise KeyboardInterrupt
        return real_wait(futures)

    drain = SharedDrain(pool, [slow], helpers=1)
    assert helper_started.wait(5)
    monkeypatch.setattr(shared_drain, "wait", interrupted_wait)
    with pytest.raises(KeyboardInterrupt):
        drain.finish()
    assert ended == [0]
