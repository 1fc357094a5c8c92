"""Staged run writes: encoded now, durable and visible only at commit, and a killed writer's
temporary files are cleaned by gc — the training loop relies on this to take fsync off its path."""

from __future__ import annotations

import os
import time

import pytest
import torch

from zoo_common.errors import ZooError
from zoo.store import run_lock
from zoo.store.gc import collect_garbage
from zoo.config.names import RunId
from zoo.store.store import Store
from zoo.store.verify import verify_store

RUN = RunId("tiny", "1l64", 1)


def _state(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(64, 64, generator=g), "b": torch.randn(64, generator=g)}


def _write_step(run, step: int, weights, into):
    run.write_checkpoint(step, weights, tokens_seen=step, config_hash="h", into=into)
    optimizer = {"state": {0: {"exp_avg": weights["w"] * 0.5, "step": torch.tensor(float(step))}},
                 "param_groups": [{"lr": 0.1, "params": [0]}]}
    run.write_keyframe(step, model=weights, optimizer=optimizer, scheduler={"last_epoch": step},
                       rng={"torch_cpu": torch.get_rng_state()}, extra={}, tokens_seen=step,
                       config_hash="h", into=into)
    run.write_json("status.json", {"last_step": step}, into=into)


def _blob_files(root) -> list:
    return [p for p in (root / "blobs").glob("*/*") if not p.name.startswith(".tmp-")]


def test_staged_step_is_invisible_until_commit_then_whole_and_shares_blobs(tmp_path):
    store = Store.open(tmp_path / "store")
    run = store.run(RUN)
    weights = _state(0)
    into = run.begin_write()
    _write_step(run, 5, weights, into)
    assert run.checkpoint_steps() == [] and run.keyframe_steps() == []
    assert not run.location.exists("status.json") and _blob_files(tmp_path / "store") == []
    into.commit()
    assert run.checkpoint_steps() == [5] and run.keyframe_steps() == [5]
    assert run.read_json("status.json") == {"last_step": 5}
    loaded = run.read_checkpoint(5).tensors
    assert all(torch.equal(loaded[k], v) for k, v in weights.items())
    assert torch.equal(run.read_keyframe(5).optimizer["state"][0]["exp_avg"], weights["w"] * 0.5)
    # checkpoint and keyframe model share blob files: w, exp_avg, rng = 3 distinct (b and step,
    # <= 4 KiB, live inline in the manifests)
    assert len(_blob_files(tmp_path / "store")) == 3
    assert not list((tmp_path / "store").rglob(".tmp-*"))
    assert verify_store(store).ok


def test_uncommitted_write_of_a_killed_writer_is_invisible_and_gc_removes_its_files(tmp_path):
    store = Store.open(tmp_path / "store")
    run = store.run(RUN)
    run.write_checkpoint(0, _state(0), tokens_seen=0, config_hash="h")
    _write_step(run, 1, _state(1), run.begin_write())  # never committed: the writer "died"
    leftovers = list((tmp_path / "store").rglob(".tmp-*"))
    assert leftovers and run.checkpoint_steps() == [0] and verify_store(store).ok
    assert collect_garbage(store).removed_temporary == 0  # young: a writer may still commit them
    old = time.time() - 7200
    for path in leftovers:
        os.utime(path, (old, old))
    report = collect_garbage(store)
    assert report.removed_temporary == len(leftovers) and report.removed == []
    assert not list((tmp_path / "store").rglob(".tmp-*")) and run.checkpoint_steps() == [0]


def test_discarded_write_leaves_nothing(tmp_path):
    store = Store.open(tmp_path / "store")
    run = store.run(RUN)
    into = run.begin_write()
    _write_step(run, 3, _state(3), into)
    into.discard()
    into.commit()  # a discarded write cannot land later
    assert run.checkpoint_steps() == [] and not list((tmp_path / "store").rglob(".tmp-*"))


def test_lease_refresh_is_throttled_but_happens(tmp_path, monkeypatch):
    store = Store.open(tmp_path / "store")
    run = store.run(RUN)
    with run.lock("trainer"):
        lease = run.location.local_path("lock.json")
        first = lease.read_bytes()
        run.write_checkpoint(0, _state(0), tokens_seen=0, config_hash="h")
        assert lease.read_bytes() == first  # within a minute: no rewrite per checkpoint
        monkeypatch.setattr(run_lock, "REFRESH_EVERY", 0.0)
        time.sleep(0.01)
        run.write_checkpoint(1, _state(1), tokens_seen=1, config_hash="h")
        assert lease.read_bytes() != first


def test_gc_refuses_a_negative_grace_period(tmp_path):
    store = Store.open(tmp_path / "store")
    store.run(RUN).write_checkpoint(0, _state(0), tokens_seen=0, config_hash="h")
    with pytest.raises(ZooError, match="grace period must be 0 or more"):
        collect_garbage(store, grace_seconds=-3600)


def test_keyframe_reuses_the_checkpoints_references_unless_a_tensor_changed(tmp_path, monkeypatch):
    from zoo.store import blobs

    hashed = []
    real_hash = blobs.sha256_hex
    monkeypatch.setattr(blobs, "sha256_hex", lambda raw: hashed.append(len(raw)) or real_hash(raw))
    store = Store.open(tmp_path / "store")
    run = store.run(RUN)
    weights = {"w": torch.randn(64, 64), "v": torch.randn(64, 64)}
    into = run.begin_write()
    run.write_checkpoint(3, weights, tokens_seen=3, config_hash="h", into=into)
    assert len(hashed) == 2
    weights["v"].mul_(2)  # changed in place after the checkpoint was staged: must be stored anew
    run.write_keyframe(3, model=weights, optimizer={}, scheduler={}, rng={}, extra={},
                       tokens_seen=3, config_hash="h", into=into)
    assert len(hashed) == 3  # only v was hashed again
    into.commit()
    checkpoint, keyframe = run.checkpoint_manifest(3)["tensors"], run.keyframe_manifest(3)["model"]
    assert checkpoint["w"] == keyframe["w"] and checkpoint["v"]["blob"] != keyframe["v"]["blob"]
    assert torch.equal(run.read_keyframe(3).model["v"], weights["v"])
    assert torch.equal(run.read_checkpoint(3).tensors["v"], weights["v"] / 2)


@pytest.mark.parametrize("hard_links", [True, False])
def test_create_exclusive_makes_the_file_whole_once_and_leaves_nothing_else(tmp_path, monkeypatch,
                                                                            hard_links):
    """A lock file must never be seen empty (a second writer took an empty lock for a stale one and
    held the run too): it is written under a temporary name and linked into place; filesystems
    without hard links fall back to an exclusive create."""
    from zoo_common.location import open_location

    if not hard_links:
        def no_links(src, dst):
            raise PermissionError(1, "Operation not permitted")
        monkeypatch.setattr(os, "link", no_links)
    location = open_location(tmp_path)
    assert location.create_exclusive("runs/r/lock.json", b'{"owner": "a"}')
    assert not location.create_exclusive("runs/r/lock.json", b'{"owner": "b"}')
    assert (tmp_path / "runs/r/lock.json").read_bytes() == b'{"owner": "a"}'
    assert os.listdir(tmp_path / "runs/r") == ["lock.json"]
