"""Replay is honest: stored steps replay bit-exactly, a step between checkpoints equals what an
uninterrupted run had, another thread count is reported as different, a tampered keyframe is
caught, and instrumented gradients equal a direct backward pass."""
from __future__ import annotations

import pytest
import torch

import zoo
from zoo_common.errors import IntegrityError, ZooError
from training.sweep import train_family
from zoo.config.names import RunId
from zoo.engine.step_replay import check_all, replay_run
from zoo.store.store import Store

from micro_family import write_manifest

NAME = "micro-1l32"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The micro family (sparse checkpoints) and the same runs with a checkpoint at every step."""
    folder = tmp_path_factory.mktemp("replay")
    sparse = Store.open(str(folder / "sparse"))
    train_family(write_manifest(folder, seeds=[1]), store=sparse, threads=2, progress=False)
    dense = Store.open(str(folder / "dense"))
    every = {"log_spaced_until": 1, "every": 1, "keyframe_every": 8}
    train_family(write_manifest(folder, "dense.yaml", seeds=[1], checkpoints=every), store=dense,
                 threads=2, progress=False)
    return sparse, dense


def test_every_stored_checkpoint_replays_exactly(trained):
    sparse, _ = trained
    reports = check_all(sparse.run(RunId("micro", "1l32", 1)), store=sparse, progress=False)
    assert len(reports) >= 6
    assert all(r.compared and r.exact for r in reports), [r.verdict() for r in reports]


def test_public_replay_of_a_stored_step(trained):
    sparse, _ = trained
    report = zoo.replay(NAME, seed=1, step=12, store=sparse, progress=False)
    assert report.exact and report.from_keyframe == 8 and report.max_abs_diff == 0.0
    assert report.verdict().startswith("EXACT")


def test_step_between_checkpoints_loads_by_replay_and_equals_uninterrupted(trained):
    sparse, dense = trained
    assert 11 not in zoo.steps(NAME, seed=1, store=sparse)
    model, _ = zoo.load(NAME, seed=1, step=11, store=sparse)
    expected = dense.run(RunId("micro", "1l32", 1)).read_checkpoint(11).tensors
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name


def test_replay_and_load_share_the_replay_of_a_step_that_was_not_stored(trained):
    """zoo.load's cached replay is not replayed again by zoo.replay, and zoo.replay's replay of a
    step that was not stored is what zoo.load then serves; both are the uninterrupted run's."""
    from zoo.registry.reachable import is_materialized

    sparse, dense = trained
    run = sparse.run(RunId("micro", "1l32", 1))
    expected = dense.run(RunId("micro", "1l32", 1)).read_checkpoint(13).tensors
    assert 13 not in zoo.steps(NAME, seed=1, store=sparse) and not is_materialized(run, 13)
    first = zoo.replay(NAME, seed=1, step=13, store=sparse, progress=False)
    assert not first.compared and not first.cached and is_materialized(run, 13)
    again = zoo.replay(NAME, seed=1, step=13, store=sparse, progress=False)
    assert again.cached and "not replayed again" in again.verdict()
    assert again.n_tensors == first.n_tensors == len(expected) and again.from_keyframe == 8
    model, _ = zoo.load(NAME, seed=1, step=13, store=sparse)  # from the replay's cache
    assert all(torch.equal(t, expected[k]) for k, t in model.state_dict().items())
    fresh = zoo.replay(NAME, seed=1, step=13, store=sparse, threads=2, progress=False)
    assert not fresh.cached  # asked for a thread count: replayed anew, as asked


def test_other_thread_count_is_reported_not_exact(trained):
    sparse, _ = trained
    report = replay_run(sparse.run(RunId("micro", "1l32", 1)), 24, store=sparse, threads=1,
                        progress=False)
    assert report.environment_differences["threads"] == (2, 1)
    assert not report.exact and report.max_abs_diff > 0
    assert report.verdict().startswith("DIFFERS")


def test_tampered_keyframe_is_detected(trained, tmp_path):
    import shutil

    sparse, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(sparse.location.local_path(), copy)
    store = Store.open(str(copy))
    run = store.run(RunId("micro", "1l32", 1))
    manifest = run.checkpoint_manifest(8)
    blob = next(iter(manifest["tensors"].values()))["blob"]
    path = next(copy.glob(f"blobs/**/{blob}*"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        replay_run(run, 12, store=store, progress=False)


def test_bad_steps_get_clear_errors(trained):
    sparse, _ = trained
    with pytest.raises(ZooError, match="step 0 is the initial weights"):
        zoo.replay(NAME, seed=1, step=0, store=sparse, progress=False)
    with pytest.raises(ZooError, match="1..24"):
        zoo.replay(NAME, seed=1, step=99, store=sparse, progress=False)


def test_instrumented_gradients_equal_a_direct_backward_pass(trained):
    from zoo.engine.instrument import inspect_step

    sparse, _ = trained
    seen = inspect_step(NAME, seed=1, step=10, store=sparse, progress=False)
    before, _ = zoo.load(NAME, seed=1, step=9, store=sparse)
    batch = zoo.batch(NAME, seed=1, step=10, store=sparse)
    assert torch.equal(seen.batch, batch)
    before.train()
    before(input_ids=batch, labels=batch).loss.backward()
    for name, param in before.named_parameters():
        assert torch.allclose(seen.gradients[name], param.grad, atol=1e-6, rtol=1e-5), name
    assert torch.allclose(seen.per_example_loss.mean(),
                          before(input_ids=batch, labels=batch).loss.detach(),
                          atol=1e-5)
    name = next(n for n, _ in before.named_parameters() if n.endswith("query_key_value.weight"))
    per_example = seen.per_example_gradients(name)
    assert per_example.shape == (batch.shape[0], *seen.gradients[name].shape)
    assert torch.allclose(per_example.mean(0), seen.gradients[name], atol=1e-6, rtol=1e-4)
    assert len(seen.texts) == batch.shape[0] and all(isinstance(t, str) for t in seen.texts)
