"""Tensor history reads one tensor across steps: equal to slices of full checkpoints, touching only
that tensor's blobs (a corrupted blob of ANOTHER tensor does not matter, its own is caught), and an
unknown tensor name gets the closest real names."""
from __future__ import annotations

import shutil

import pytest
import torch
from micro_family import write_manifest

import zoo
from zoo_common.errors import IntegrityError, ZooError
from training.sweep import train_family
from zoo.registry.history import tensor_history
from zoo.config.names import RunId
from zoo.store.store import Store

NAME = "micro-1l32"
QKV = "gpt_neox.layers.0.attention.query_key_value.weight"
OTHER = "gpt_neox.embed_in.weight"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("history")
    store = Store.open(str(folder / "store"))
    train_family(write_manifest(folder, seeds=[1]), store=store, threads=2, progress=False)
    return store


def _corrupt(store: Store, blob: str) -> None:
    path = next(store.location.local_path().glob(f"blobs/*/{blob}"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_history_equals_slices_of_full_checkpoints(store):
    run = store.run(RunId("micro", "1l32", 1))
    history = tensor_history(NAME, seed=1, tensor=QKV, store=store)
    assert history.steps == zoo.steps(NAME, seed=1, store=store)
    assert history.values.shape == (len(history.steps), 96, 32)
    for i, step in enumerate(history.steps):
        assert torch.equal(history.values[i], run.read_checkpoint(step).tensors[QKV]), step
    assert not torch.equal(history.values[0], history.values[-1])


def test_summary_norms_and_changes(store):
    history = tensor_history(NAME, seed=1, tensor=QKV, steps=[12, 0, 24], store=store)
    assert history.steps == [0, 12, 24]
    v = history.values.double()
    assert torch.allclose(history.norms(), torch.stack([x.norm() for x in v]))
    assert torch.allclose(history.changes(), torch.stack([(v[1] - v[0]).norm(), (v[2] - v[1]).norm()]))


def test_reads_only_the_tensor_asked_for(store, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(store.location.local_path(), copy)
    damaged = Store.open(str(copy))
    run = damaged.run(RunId("micro", "1l32", 1))
    for step in run.checkpoint_steps():  # break every blob of ANOTHER tensor
        _corrupt(damaged, run.checkpoint_manifest(step)["tensors"][OTHER]["blob"])
    with pytest.raises(IntegrityError):  # a whole-checkpoint read would notice
        run.read_checkpoint(12)
    history = tensor_history(NAME, seed=1, tensor=QKV, store=damaged)
    expected = tensor_history(NAME, seed=1, tensor=QKV, store=store)
    assert torch.equal(history.values, expected.values)
    _corrupt(damaged, run.checkpoint_manifest(12)["tensors"][QKV]["blob"])  # its own blob: caught
    with pytest.raises(IntegrityError, match="step 12 tensor 'gpt_neox.layers.0.attention"):
        tensor_history(NAME, seed=1, tensor=QKV, store=damaged)


def test_unknown_tensor_lists_close_names(store):
    with pytest.raises(ZooError, match=r"no tensor 'gpt_neox.layers.0.attention.qkv.weight'; "
                                       r"closest: .*query_key_value.weight"):
        tensor_history(NAME, seed=1, tensor="gpt_neox.layers.0.attention.qkv.weight", store=store)


def test_unstored_step_is_refused_with_the_stored_list(store):
    with pytest.raises(ZooError, match=r"no stored checkpoint at step\(s\) 5, 99 .*stored: 0, 1"):
        tensor_history(NAME, seed=1, tensor=QKV, steps=[0, 5, 99], store=store)
    with pytest.raises(ZooError, match="steps is empty"):
        tensor_history(NAME, seed=1, tensor=QKV, steps=[], store=store)


def test_unknown_run_lists_what_exists(store):
    with pytest.raises(ZooError, match="seeds: 1"):
        tensor_history(NAME, seed=3, tensor=QKV, store=store)
