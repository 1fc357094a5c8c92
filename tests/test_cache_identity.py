"""The cache is a copy, never a source of truth: a cached snapshot (stored or replayed step), an
opened data index and a fetched corpus are served only while the store still holds what they
were built from. A store retrained in place, a branch label reused with another intervention and
an HTTP store retrained by its owner each get freshly built weights, never the old run's."""
from __future__ import annotations

import shutil

import pytest
import torch
from micro_family import write_manifest

import zoo
from training.branching import branch
from training.sweep import train_family
from zoo.store.store import Store

NAME, REPLAYED, STORED = "micro-1l32", 13, 12  # micro stores 0 1 2 4 6 8 12 16 18 24; 13 is not


def _weights(step: int, store, **kwargs) -> dict:
    model, _ = zoo.load(NAME, seed=1, step=step, store=store, **kwargs)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _train(folder, store_path, **overrides) -> Store:
    store = Store.open(str(store_path))
    train_family(write_manifest(folder, **{"seeds": [1], **overrides}), store=store, threads=2,
                 progress=False)
    return store


def _fresh(step, store, monkeypatch, tmp_path, name: str, **kwargs) -> dict:
    """The weights built from nothing: a new, empty cache."""
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / name))
    return _weights(step, store, **kwargs)


def test_a_store_retrained_in_place_serves_the_new_run(tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    monkeypatch.setenv("ZOO_CACHE", cache)
    path = tmp_path / "store"
    store = _train(tmp_path, path)
    old_replayed, old_stored = _weights(REPLAYED, store), _weights(STORED, store)
    old_batch = zoo.batch(NAME, seed=1, step=REPLAYED, store=store)
    shutil.rmtree(path)  # retrained at the same path: another learning rate and data order
    store = _train(tmp_path, path, optimizer={"lr": 1e-3, "betas": [0.9, 0.95], "eps": 1e-8,
                                              "weight_decay": 0.1, "clip": 1.0},
                   seeds=[{"seed": 1, "data_seed": 7}])
    new_replayed, new_stored = _weights(REPLAYED, store), _weights(STORED, store)
    assert not _same(new_replayed, old_replayed) and not _same(new_stored, old_stored)
    assert _same(new_replayed, _fresh(REPLAYED, store, monkeypatch, tmp_path, "empty"))
    assert _same(new_stored, _weights(STORED, store))
    new_batch = zoo.batch(NAME, seed=1, step=REPLAYED, store=store)  # same process: reopened
    assert not torch.equal(new_batch, old_batch)
    assert zoo.replay(NAME, seed=1, step=STORED, store=store).exact


def test_a_reused_branch_label_serves_the_new_branch(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    store = _train(tmp_path, tmp_path / "store")
    first = zoo.batch_ids(NAME, seed=1, step=6, store=store).tolist()
    second = zoo.batch_ids(NAME, seed=1, step=7, store=store).tolist()
    branch(NAME, seed=1, from_step=5, label="x", store=store, progress=False, drop_samples=first)
    old = _weights(REPLAYED, store, branch="x")
    shutil.rmtree(zoo.open_run(NAME, seed=1, store=store, branch="x").location.local_path())
    branch(NAME, seed=1, from_step=5, label="x", store=store, progress=False, drop_samples=second)
    new = _weights(REPLAYED, store, branch="x")
    assert not _same(new, old)
    assert _same(new, _fresh(REPLAYED, store, monkeypatch, tmp_path, "empty", branch="x"))


def test_an_http_store_retrained_by_its_owner_serves_the_new_run(tmp_path, monkeypatch):
    pytest.importorskip("uvicorn", reason="zoo serve needs the serve extra")
    from served_store import Server

    path = tmp_path / "store"
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "owner-cache"))
    store = _train(tmp_path, path)
    server = Server(store)
    try:
        monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "reader-cache"))  # a reader elsewhere
        old = _weights(REPLAYED, server.url)
        monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "owner-cache"))
        shutil.rmtree(path)
        _train(tmp_path, path, optimizer={"lr": 1e-3, "betas": [0.9, 0.95], "eps": 1e-8,
                                          "weight_decay": 0.1, "clip": 1.0})
        monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "reader-cache"))
        new = _weights(REPLAYED, server.url)
        assert not _same(new, old)
        assert _same(new, _fresh(REPLAYED, server.url, monkeypatch, tmp_path, "empty"))
    finally:
        server.stop()
