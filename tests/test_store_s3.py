"""The store on s3:// against a real S3-protocol server on loopback (moto's server mode)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from zoo_common.errors import IntegrityError, ZooError
from zoo.config.names import RunId
from zoo.store.store import Store
from zoo.store.transfer import copy_runs
from zoo.store.verify import verify_store

sys.path.insert(0, str(Path(__file__).parent))
from s3_server import free_port, s3_bucket, storage_options_for

RUN = RunId("tiny", "2l128", 1)


@pytest.fixture(scope="module")
def s3():
    with s3_bucket() as (url, options):
        yield url, options


def test_s3_round_trip_keyframe_and_push_pull(s3, tmp_path):
    url, options = s3
    store = Store.open(url + "/roundtrip", storage_options=options)
    run = store.run(RUN)
    tensors = {
        "fp32": torch.randn(40, 30),  # all > 4 KiB: blob files (smaller ones live inline)
        "bf16": torch.randn(2100).bfloat16(),
        "i64": torch.arange(600),
    }
    with run.lock("s3 test"):
        run.write_json("run.json", {"seed": 1})
        run.write_checkpoint(0, tensors, tokens_seen=0, config_hash="h")
        run.write_checkpoint(
            1, {**tensors, "fp32": tensors["fp32"] + 1}, tokens_seen=8, config_hash="h"
        )
        run.write_keyframe(
            1,
            model={**tensors, "fp32": tensors["fp32"] + 1},
            optimizer={"state": {0: {"exp_avg": torch.ones(3)}}, "param_groups": [{"lr": 0.1}]},
            scheduler={"last_epoch": 1},
            rng={"cpu": torch.get_rng_state()},
            extra={"cursor": 1},
            tokens_seen=8,
            config_hash="h",
        )
    again = Store.open(url + "/roundtrip", storage_options=options)
    assert again.runs() == [RUN] and again.run(RUN).checkpoint_steps() == [0, 1]
    back = again.run(RUN).read_checkpoint(0)
    for name, tensor in tensors.items():
        assert back.tensors[name].dtype == tensor.dtype and torch.equal(back.tensors[name], tensor)
    assert again.run(RUN).read_keyframe(1).optimizer["state"][0]["exp_avg"].tolist() == [1.0] * 3
    assert (
        len(again.blobs.list_all()) == 4 + 1
    )  # bf16 and i64 shared by both steps; + rng (exp_avg is inline)
    assert verify_store(again).ok

    local = Store.open(tmp_path / "local")
    pulled = copy_runs(again, local)
    assert pulled.manifests_copied == 3 and verify_store(local).ok
    assert torch.equal(local.run(RUN).read_checkpoint(1).tensors["fp32"], tensors["fp32"] + 1)
    local.run(RUN).write_checkpoint(2, {"fp32": torch.zeros(2000)}, tokens_seen=16, config_hash="h")
    pushed = copy_runs(local, again)
    assert pushed.blobs_copied == 1 and pushed.manifests_copied == 1 and pushed.blobs_present == 5
    assert again.run(RUN).checkpoint_steps() == [0, 1, 2]


def test_s3_corruption_is_caught(s3):
    url, options = s3
    store = Store.open(url + "/corrupt", storage_options=options)
    run = store.run(RUN)
    run.write_checkpoint(3, {"w": torch.randn(2000)}, tokens_seen=3, config_hash="h")
    sha = run.checkpoint_manifest(3)["tensors"]["w"]["blob"]
    path = store.location.path(store.blobs.relpath(sha))
    data = bytearray(store.location.fs.cat_file(path))
    store.location.fs.pipe_file(path, bytes(data[:-7]))
    with pytest.raises(IntegrityError, match=rf"tiny-2l128 seed 1 step 3 tensor 'w'.*{sha}"):
        run.read_checkpoint(3)


def test_unreachable_s3_is_one_error_naming_the_url():
    dead = storage_options_for(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ZooError, match="s3://nowhere/zoo"):
        Store.open("s3://nowhere/zoo", storage_options=dead)


def test_a_missing_bucket_is_no_store_to_read_and_one_error_to_write(s3):
    from zoo.cli.common import open_store_at

    url, options = s3
    missing = "s3://no-such-bucket-" + url.split("/")[2][-8:] + "/zoo"
    store = Store.open(missing, storage_options=options)
    assert not store.exists()  # zoo ls / verify then say "no Model Zoo store at ..."
    with pytest.raises(ZooError, match=f"I/O failed on store {missing}"):
        open_store_at(store, must_exist=False)


def test_default_store_comes_from_env_then_default(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_STORE", str(tmp_path / "env-store"))
    assert Store.open().url == str(tmp_path / "env-store")
    monkeypatch.delenv("ZOO_STORE")
    monkeypatch.chdir(tmp_path)
    assert Store.open().url == str(tmp_path / "zoo-store")
