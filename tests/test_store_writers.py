"""Writers that die, collide or run out of space never leave a store a reader could be fooled by."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from zoo_common.errors import ZooError
from zoo.config.names import RunId
from zoo.store.store import Store
from zoo.store.verify import verify_store

ROOT = Path(__file__).resolve().parents[1]
RUN = RunId("tiny", "2l128", 1)


def start(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


WRITER = """
    import sys, torch
    from zoo.store.store import Store
    from zoo.config.names import RunId
    store = Store.open(sys.argv[1])
    run = store.run(RunId.parse(sys.argv[2]))
    shared = torch.ones(256, 256)
    with run.lock("writer " + sys.argv[2]):
        for step in range(int(sys.argv[3])):
            g = torch.Generator().manual_seed(step)
            run.write_checkpoint(step, {"shared": shared, "w": torch.randn(int(sys.argv[4]), generator=g)},
                                 tokens_seen=step * 8, config_hash="h")
"""


def test_writer_killed_mid_write_leaves_a_valid_store(tmp_path):
    store_path = tmp_path / "store"
    writer = start(WRITER, str(store_path), RUN.key, "1000", "2000000")
    checkpoints = store_path / "runs/tiny/2l128/seed-1/checkpoints"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(checkpoints.glob("*.json"))) < 2:
        time.sleep(0.02)
    time.sleep(0.05)  # now it is somewhere inside a blob or manifest write
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    store = Store.open(store_path)
    steps = store.run(RUN).checkpoint_steps()
    assert len(steps) >= 2 and steps == list(range(len(steps)))
    report = verify_store(store)
    assert report.ok, report.problems
    for step in steps:
        store.run(RUN).read_checkpoint(step)
    # the dead writer's lease is stale (its pid is gone), so a new writer takes over
    store.run(RUN).write_checkpoint(5000, {"w": torch.zeros(1)}, tokens_seen=10**9, config_hash="h")


def test_two_writers_of_different_runs_do_not_corrupt_each_other(tmp_path):
    store_path = tmp_path / "store"
    runs = [RunId("tiny", "2l128", 1), RunId("tiny", "2l128", 2)]
    writers = [start(WRITER, str(store_path), r.key, "12", "20000") for r in runs]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    store = Store.open(store_path)
    assert store.runs() == runs
    report = verify_store(store)
    assert report.ok, report.problems
    assert report.blobs == 1 + 12  # "shared" stored once; "w" is the same per step in both runs
    a, b = (store.run(r).read_checkpoint(11).tensors["w"] for r in runs)
    assert torch.equal(a, b)


def test_second_writer_of_the_same_run_is_refused_naming_the_holder(tmp_path):
    store_path = tmp_path / "store"
    holder = start(
        """
        import sys, time
        from zoo.store.store import Store
        from zoo.config.names import RunId
        with Store.open(sys.argv[1]).run(RunId.parse(sys.argv[2])).lock("trainer on node-7"):
            print("held", flush=True)
            time.sleep(60)
    """,
        str(store_path),
        RUN.key,
    )
    assert holder.stdout.readline().strip() == "held"
    run = Store.open(store_path).run(RUN)
    try:
        with pytest.raises(
            ZooError, match=r"being written by another writer: 'trainer on node-7'.*pid"
        ):
            run.write_checkpoint(0, {"w": torch.zeros(1)}, tokens_seen=0, config_hash="h")
        with pytest.raises(ZooError, match="trainer on node-7"), run.lock("second trainer"):
            pass
        assert run.checkpoint_steps() == []
    finally:
        holder.kill()
        holder.wait()
    with run.lock("second trainer"):  # the holder died: its lease is stale and is taken over
        run.write_checkpoint(0, {"w": torch.zeros(1)}, tokens_seen=0, config_hash="h")
    assert not (run.location.local_path("lock.json")).exists()


def test_failed_write_leaves_nothing_half_visible(tmp_path):
    """Disk full, simulated for real: the writing subprocess gets a file-size limit (RLIMIT_FSIZE,
    SIGXFSZ ignored), so the OS fails its write() with EFBIG part-way through a blob, exactly where
    ENOSPC would. A tmpfs of a few kB would need root; this needs nothing."""
    store_path = tmp_path / "store"
    Store.open(store_path).run(RUN).write_checkpoint(
        0, {"w": torch.zeros(4)}, tokens_seen=0, config_hash="h"
    )
    writer = start(
        """
        import resource, signal, sys, torch
        from zoo.store.store import Store
        from zoo.config.names import RunId
        from zoo_common.errors import ZooError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        run = Store.open(sys.argv[1]).run(RunId.parse(sys.argv[2]))
        try:
            run.write_checkpoint(1, {"small": torch.ones(10), "big": torch.randn(1_000_000)},
                                 tokens_seen=8, config_hash="h")
        except ZooError as exc:
            print(exc)
            sys.exit(3)
    """,
        str(store_path),
        RUN.key,
    )
    out, err = writer.communicate(timeout=60)
    assert writer.returncode == 3, err
    assert "File too large" in out and str(store_path) in out
    store = Store.open(store_path)
    assert store.run(RUN).checkpoint_steps() == [0]
    assert not [p for p in store_path.rglob(".tmp-*")]
    assert verify_store(store).ok
    assert torch.equal(store.run(RUN).read_checkpoint(0).tensors["w"], torch.zeros(4))
