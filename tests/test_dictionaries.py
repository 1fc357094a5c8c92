"""Dictionaries beside checkpoints: the same command gives the same bits, a flipped bit is caught,
sites resolve by TransformerLens name or module path, bad input names what was wrong, the store's
gc / push / pull / verify carry them, and features are followed across steps."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from micro_family import write_manifest

import zoo
from training.sweep import train_family
from zoo.cli import main
from zoo.dictionaries.lineage import per_step_counts, track
from zoo.store.gc import collect_garbage
from zoo.store.store import Store
from zoo.store.transfer import copy_runs
from zoo.store.verify import verify_store

NAME = "micro-1l32"
SITE = "blocks.0.hook_resid_post"
SMALL = dict(width=64, k=4, steps=60, batch=256)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dictionaries")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_CACHE", str(folder / "cache"))
        store = Store.open(str(folder / "store"))
        train_family(write_manifest(folder, seeds=[1], steps=16), store=store, threads=2,
                     progress=False)
        yield store


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))


def test_the_same_dictionary_twice_has_the_same_bits(store, tmp_path):
    first = zoo.train_dict(NAME, seed=1, step=8, site=SITE, store=store, **SMALL)
    again = Store.open(str(tmp_path / "other"))
    copy_runs(store, again)
    for name in again.run(zoo.open_run(NAME, seed=1, store=again).run_id).dictionary_names():
        again.run(zoo.open_run(NAME, seed=1, store=again).run_id).location.remove(
            f"dictionaries/{name}.json")  # the record gone: the same call trains it again
    second = zoo.train_dict(NAME, seed=1, step=8, site=SITE, store=again, **SMALL)
    assert first.record["name"] == second.record["name"]
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert torch.equal(first.density, second.density)
    loaded = zoo.load_dict(NAME, seed=1, step=8, site=SITE, store=store)
    assert torch.equal(loaded.W_dec, first.W_dec) and loaded.record["data"] == {"source": "training", "steps": [1, 16]}
    x = torch.randn(5, 32)
    assert torch.equal(loaded.decode(loaded.encode(x)), loaded(x)[0])
    quality = loaded.record["quality"]
    assert 0 < quality["variance_explained"] <= 1 and quality["l0"] <= SMALL["k"]
    assert set(quality) >= {"dead_fraction", "dense_fraction", "loss_recovered", "loss_zero_ablated"}


def test_a_flipped_bit_in_a_dictionary_blob_is_caught(store, tmp_path):
    d = zoo.train_dict(NAME, seed=1, step=4, site=SITE, store=store, **SMALL)
    run = zoo.open_run(NAME, seed=1, store=store)
    ref = run.dictionary_record(d.record["name"])["tensors"]["W_enc"]
    path = store.location.local_path(store.blobs.relpath(ref["blob"]))
    original = path.read_bytes()
    damaged = bytearray(original)
    damaged[-1] ^= 0x10
    path.write_bytes(bytes(damaged))
    try:
        with pytest.raises(zoo.IntegrityError, match="dictionary .*W_enc"):
            zoo.load_dict(NAME, seed=1, step=4, site=SITE, store=store)
        assert any("dictionary" in str(p) for p in verify_store(store).problems)
    finally:
        path.write_bytes(original)
    assert not verify_store(store).problems


def test_sites_by_name_or_module_path_and_bad_input(store):
    by_path = zoo.train_dict(NAME, seed=1, step=8, site="gpt_neox.layers.0", store=store, **SMALL)
    assert by_path.record["site"] == SITE  # the module path TransformerLens has a name for
    mlp = zoo.train_dict(NAME, seed=1, step=8, site="blocks.0.mlp.hook_post", store=store,
                         width=64, k=4, steps=20, batch=256)
    assert mlp.record["module"] == "gpt_neox.layers.0.mlp.dense_4h_to_h" and mlp.record["d_in"] == 64
    with pytest.raises(zoo.ArgumentError, match="no site 'blocks.3.hook_resid_post'; valid: blocks.0"):
        zoo.train_dict(NAME, seed=1, step=8, site="blocks.3.hook_resid_post", store=store, **SMALL)
    with pytest.raises(zoo.ArgumentError, match="unknown site 'nonsense'"):
        zoo.train_dict(NAME, seed=1, step=8, site="nonsense", store=store, **SMALL)
    with pytest.raises(zoo.StepNotFoundError):
        zoo.train_dict(NAME, seed=1, step=99, site=SITE, store=store, **SMALL)
    with pytest.raises(zoo.ArgumentError, match="width must be a whole number >= 1"):
        zoo.train_dict(NAME, seed=1, step=8, site=SITE, store=store, width=0)
    with pytest.raises(zoo.ArgumentError, match="k must be between 1 and the width 8"):
        zoo.train_dict(NAME, seed=1, step=8, site=SITE, store=store, width=8, k=9)
    with pytest.raises(zoo.ArgumentError, match="outside the run: it trained steps 1..16"):
        zoo.train_dict(NAME, seed=1, step=8, site=SITE, store=store, data="10:40", **SMALL)
    with pytest.raises(zoo.NotFoundError, match="no dictionary .* step 2"):
        zoo.load_dict(NAME, seed=1, step=2, site=SITE, store=store)


def test_gc_keeps_dictionaries_and_push_pull_carries_them(store, tmp_path):
    d = zoo.train_dict(NAME, seed=1, step=12, site=SITE, store=store, **SMALL)
    report = collect_garbage(store, grace_seconds=0.0)
    assert not verify_store(store).problems and report.referenced > 0
    mine = Store.open(str(tmp_path / "mine"))
    copy_runs(store, mine)
    pulled = zoo.load_dict(NAME, seed=1, step=12, site=SITE, store=mine)
    assert torch.equal(pulled.W_enc, d.W_enc) and not verify_store(mine).problems


def test_features_are_followed_across_steps():
    a = np.eye(4)
    b = np.stack([a[1], a[0], -a[2], a[3] + 0.1 * a[2]])  # 0,1 swap; 2 flips (gone + born)
    c = b[[0, 1, 3]]
    table = track([10, 20, 30], [a, b, c], [np.ones(4), np.ones(4), np.array([1, 1, 0.5])])
    counts = per_step_counts(table)
    assert [(x["alive"], x["born"], x["gone"]) for x in counts] == [(4, 4, 0), (4, 1, 1), (3, 0, 1)]
    rows = [r for r in table.to_pylist() if r["step"] == 20]
    assert {r["feature"]: r["born"] for r in rows} == {0: 10, 1: 10, 2: 20, 3: 10}


def test_zoo_dict_commands(store, capsys, tmp_path):
    url, site = str(store.location.local_path()), "blocks.0.hook_attn_out"
    assert main(["dict", "train", NAME, "--seed", "1", "--step", "all", "--every", "3", "--site",
                 site, "--width", "64", "--k", "4", "--steps", "30", "--batch", "256",
                 "--warm-start", "--store", url]) == 0
    stored = zoo.steps(NAME, seed=1, store=store)
    swept = sorted(set(stored[::3]) | {stored[-1]})
    out = capsys.readouterr().out
    assert out.count("variance explained") == len(swept)
    assert main(["dict", "ls", NAME, "--seed", "1", "--store", url]) == 0
    assert site in capsys.readouterr().out
    png, table = tmp_path / "lineage.png", tmp_path / "lineage.parquet"
    assert main(["dict", "track", NAME, "--seed", "1", "--site", site, "--plot", str(png),
                 "--out", str(table), "--store", url]) == 0
    assert png.stat().st_size > 1000 and table.stat().st_size > 0
    assert capsys.readouterr().out.count("alive") == len(swept)
    assert main(["dict", "train", NAME, "--seed", "1", "--step", "x", "--site", SITE,
                 "--store", url]) == 2
    assert "a step number, or `all`" in capsys.readouterr().err


def test_a_dictionary_loads_from_an_http_store(store):
    pytest.importorskip("uvicorn", reason="zoo serve needs the serve extra")
    from served_store import Server

    d = zoo.train_dict(NAME, seed=1, step=12, site=SITE, store=store, **SMALL)
    server = Server(store)
    try:
        remote = zoo.load_dict(NAME, seed=1, step=12, site=SITE, store=server.url)
    finally:
        server.stop()
    assert torch.equal(remote.W_enc, d.W_enc) and remote.record["name"] == d.record["name"]
