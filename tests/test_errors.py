"""Errors a program can catch by type, as huggingface_hub's: not found (store, model, seed,
step, branch), integrity (a hash mismatch), invalid input (manifest, argument). Each is a
ZooError with one clear message, and the command line still exits 2 on every one of them."""
from __future__ import annotations

import shutil

import pytest
from micro_family import write_manifest

import zoo
from zoo.cli import main
from zoo.config.manifest import load_manifest
from zoo.store.store import Store

NAME = "micro-1l32"


@pytest.fixture()
def store(evaluated_micro_store, tmp_path):
    """A copy of the session's micro store (stored 0 1 2 4 8 12, keyframes every 4), ours to damage."""
    copy = tmp_path / "store"
    shutil.copytree(evaluated_micro_store.location.local_path(), copy)
    return Store.open(str(copy))


@pytest.mark.parametrize("call, error, words", [
    (dict(name="micro-9l99", seed=1, step=4), zoo.ModelNotFoundError, "no model 'micro-9l99'.*models: micro-1l32"),
    (dict(name=NAME, seed=7, step=4), zoo.SeedNotFoundError, "no seed 7 .*seeds: 1, 2"),
    (dict(name=NAME, seed=1, step=99), zoo.StepNotFoundError, "no step 99 .*stored: "),
    (dict(name=NAME, seed=1, step=4, branch="nope"), zoo.BranchNotFoundError, "no branch 'nope'"),
])
def test_what_is_not_there_is_a_not_found_error_of_its_kind(store, call, error, words):
    name = call.pop("name")
    with pytest.raises(error, match=words) as caught:
        zoo.load(name, store=store, **call)
    assert isinstance(caught.value, zoo.NotFoundError) and isinstance(caught.value, LookupError)
    assert isinstance(caught.value, zoo.ZooError)


def test_no_store_and_a_step_replay_cannot_reach(store, tmp_path):
    with pytest.raises(zoo.StoreNotFoundError, match="no Model Zoo store"):
        zoo.steps(NAME, seed=1, store=str(tmp_path / "nothing-here"))
    with pytest.raises(zoo.StepNotFoundError, match="step 0 is the initial weights"):
        zoo.replay(NAME, seed=1, step=0, store=store)


def test_a_corrupt_blob_is_an_integrity_error(store):
    run = zoo.open_run(NAME, seed=1, store=store)
    blob = max((ref["blob"] for ref in run.checkpoint_manifest(8)["tensors"].values()
                if "blob" in ref and "data" not in ref), key=len)
    path = store.location.local_path(store.blobs.relpath(blob))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(zoo.IntegrityError, match=blob[:8]):
        zoo.load(NAME, seed=1, step=8, store=store)


def test_bad_input_is_an_invalid_input_error_naming_what(tmp_path):
    path = write_manifest(tmp_path, batch_size="eight")
    with pytest.raises(zoo.ManifestError, match="batch_size: a number of samples, or 'full'") as caught:
        load_manifest(path)
    assert isinstance(caught.value, zoo.InvalidInputError) and isinstance(caught.value, ValueError)
    with pytest.raises(zoo.ArgumentError, match="step must be an integer, got 1.5"):
        zoo.load(NAME, seed=1, step=1.5, store=str(tmp_path))


def test_the_command_line_exits_2_with_one_line_for_each(store, tmp_path, capsys):
    url = str(store.location.local_path())
    for argv in (["show", "micro-9l99", "--store", url],
                 ["replay", NAME, "--seed", "1", "--step", "99", "--store", url],
                 ["train", write_manifest(tmp_path, batch_size="eight"), "--store", url]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("zoo: error:"), err
