"""A run pushed to an S3-protocol store (moto on loopback) loads and replays bit-exactly from
there: the corpus is fetched into the cache once, and the cache is shared safely."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import zoo
from training.sweep import train_family
from zoo.config.names import RunId
from zoo.store.store import Store
from zoo.store.transfer import copy_runs

from micro_family import write_manifest

sys.path.insert(0, str(Path(__file__).parent))
from s3_server import s3_bucket  # noqa: E402


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    folder = tmp_path_factory.mktemp("remote")
    local = Store.open(str(folder / "local"))
    train_family(write_manifest(folder, seeds=[1]), store=local, threads=2, progress=False)
    with s3_bucket() as (url, options):
        remote = Store.open(url + "/zoo", storage_options=options)
        copy_runs(local, remote)
        yield local, remote


def test_replay_from_s3_is_exact(stores, tmp_path, monkeypatch):
    _, remote = stores
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    report = zoo.replay("micro-1l32", seed=1, step=12, store=remote, progress=False)
    assert report.exact, report.verdict()
    assert list((tmp_path / "cache" / "corpora").iterdir())[0].name == \
        remote.run(RunId("micro", "1l32", 1)).read_json("run.json")["corpus_fingerprint"]


def test_load_from_s3_equals_local(stores, tmp_path, monkeypatch):
    local, remote = stores
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    model, tokenizer = zoo.load("micro-1l32", seed=1, step=12, store=remote)
    expected = local.run(RunId("micro", "1l32", 1)).read_checkpoint(12).tensors
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    assert tokenizer.decode(tokenizer("def f(x):").input_ids) == "def f(x):"
    batch = zoo.batch("micro-1l32", seed=1, step=3, store=remote)
    assert torch.equal(batch, zoo.batch("micro-1l32", seed=1, step=3, store=local))
