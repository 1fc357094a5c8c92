"""The training loop's background writer: order, bounded queue, and what happens after a failure."""
import threading
import time

import pytest

from training.background_writer import BackgroundWriter


def test_jobs_run_in_submission_order_small_and_large():
    done = []
    writer = BackgroundWriter()
    for i in range(6):
        writer.submit(lambda i=i: done.append(i), small=i % 2 == 0)
    writer.close()
    assert done == list(range(6))


def test_a_large_job_waits_while_one_is_queued_behind_the_running_one():
    release = threading.Event()
    writer = BackgroundWriter()
    writer.submit(release.wait)  # running
    writer.submit(lambda: None)  # queued behind it
    writer.submit(lambda: None, small=True)  # a log part never waits
    third = threading.Thread(target=writer.submit, args=(lambda: None,))
    third.start()
    third.join(0.3)
    assert third.is_alive(), "a third large job must wait for the first to finish"
    release.set()
    third.join(5)
    assert not third.is_alive()
    writer.close()


def test_after_a_failure_later_jobs_are_skipped_and_the_error_is_raised_once():
    ran, skipped = [], []
    go = threading.Event()
    writer = BackgroundWriter()

    def fail():
        go.wait()
        raise OSError(28, "No space left on device")

    writer.submit(fail)
    writer.submit(lambda: ran.append("later"), on_skip=lambda: skipped.append("later"))
    go.set()
    with pytest.raises(OSError, match="No space"):
        writer.drain()
    assert ran == [] and skipped == ["later"]
    writer.drain()  # reported already: not raised twice
    with pytest.raises(OSError, match="No space"):  # but nothing more is accepted
        writer.submit(lambda: ran.append("after"))
    writer.close()
    assert ran == []


def test_close_waits_for_every_queued_job():
    done = []
    writer = BackgroundWriter()
    writer.submit(lambda: (time.sleep(0.05), done.append(1)))
    writer.submit(lambda: done.append(2), small=True)
    writer.close()
    assert done == [1, 2]


def test_idle_only_when_no_job_is_running_or_queued():
    release = threading.Event()
    writer = BackgroundWriter()
    assert writer.idle
    writer.submit(release.wait)
    writer.submit(lambda: None, small=True)
    assert not writer.idle
    release.set()
    deadline = time.monotonic() + 5
    while not writer.idle and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.idle
    writer.close()
