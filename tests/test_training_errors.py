"""Bad input to training and replay gets one clear message and leaves nothing half-written."""
from __future__ import annotations

import shutil

import pytest

import zoo
from zoo_common.errors import ZooError
from training.sweep import train_family
from zoo.cli import main
from zoo.config.names import RunId
from zoo.store.store import Store

from micro_family import write_manifest


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("errors")
    manifest = write_manifest(folder, seeds=[1])
    store = Store.open(str(folder / "store"))
    train_family(manifest, store=store, threads=2, progress=False)
    return folder, manifest, store


def _copy(store: Store, target) -> Store:
    shutil.copytree(store.location.local_path(), target)
    return Store.open(str(target))


def test_batch_larger_than_corpus_is_refused(tmp_path, capsys):
    manifest = write_manifest(tmp_path, batch_size=100000)
    assert main(["train", manifest, "--store", str(tmp_path / "s"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "batch_size 100000 is larger than the corpus" in err


def test_unwritable_store_is_one_message(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    manifest = write_manifest(tmp_path)
    assert main(["train", manifest, "--store", str(blocker / "store"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo: error:") and "Traceback" not in err


def test_unknown_built_in_family_lists_the_valid_ones(capsys):
    assert main(["train", "no-such-family", "--quiet"]) == 2
    assert "tiny" in capsys.readouterr().err


def test_replay_without_corpus_names_what_is_missing(trained, tmp_path):
    _, _, store = trained
    copy = _copy(store, tmp_path / "copy")
    fingerprint = copy.run(RunId("micro", "1l32", 1)).read_json("run.json")["corpus_fingerprint"]
    shutil.rmtree(copy.location.local_path("corpora", fingerprint))
    with pytest.raises(ZooError, match=f"corpus {fingerprint[:16]}.* is missing"):
        zoo.replay("micro-1l32", seed=1, step=12, store=copy, progress=False)


def test_replay_with_index_of_another_corpus_names_both(trained, tmp_path):
    _, _, store = trained
    copy = _copy(store, tmp_path / "copy")
    run = copy.run(RunId("micro", "1l32", 1))
    record = run.read_json("run.json")
    old = record["corpus_fingerprint"]
    header = run.index_location.read_bytes("index.json").decode()
    run.index_location.write_atomic("index.json", header.replace(old, "f" * 64).encode())
    with pytest.raises(ZooError, match=f"{'f' * 16}.*{old[:16]}"):
        zoo.replay("micro-1l32", seed=1, step=12, store=copy, progress=False)


def test_replay_of_a_run_without_keyframes_says_so(trained, tmp_path):
    _, _, store = trained
    copy = _copy(store, tmp_path / "copy")
    shutil.rmtree(copy.location.local_path("runs", "micro", "1l32", "seed-1", "keyframes"))
    with pytest.raises(ZooError, match="no keyframes"):
        zoo.replay("micro-1l32", seed=1, step=12, store=copy, progress=False)
