"""The data order is a pure function: same seed same order, any world size the same global batch."""
import numpy as np
import pytest

from zoo_common.errors import ZooError
from data_index.order import global_batch, permutation, rank_slice, stream_key


def test_permutation_is_a_permutation_and_pure():
    perm = permutation(7, 0, 1000)
    assert perm.dtype == np.int64
    assert np.array_equal(np.sort(perm), np.arange(1000))
    from data_index.order import _cached_permutation

    _cached_permutation.cache_clear()
    assert np.array_equal(permutation(7, 0, 1000), perm)


def test_same_seed_same_order_other_seed_or_epoch_other_order():
    a, b = permutation(1, 0, 500), permutation(1, 0, 500)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, permutation(2, 0, 500))
    assert not np.array_equal(a, permutation(1, 1, 500))


def test_known_values_pin_the_generator():
    # If these change, every recorded index in every store stops verifying: never change them.
    assert permutation(0, 0, 10).tolist() == [0, 7, 8, 2, 5, 9, 4, 6, 3, 1]
    assert stream_key(1, 2) != stream_key(2, 1)


def test_epochs_straddle_seamlessly():
    n, batch = 10, 4  # 2.5 batches per epoch: step 3 straddles epochs 0 and 1
    stream = np.concatenate([permutation(5, e, n) for e in range(3)])
    for step in range(1, 7):
        got = global_batch(step, data_seed=5, batch_size=batch, n_samples=n)
        assert np.array_equal(got, stream[(step - 1) * batch : step * batch])
    assert np.array_equal(global_batch(3, data_seed=5, batch_size=4, n_samples=10)[:2], permutation(5, 0, 10)[8:])


def test_union_of_rank_slices_is_the_global_batch():
    batch = global_batch(17, data_seed=3, batch_size=8, n_samples=100)
    for world in (1, 2, 4):
        parts = [rank_slice(batch, r, world) for r in range(world)]
        assert all(len(p) == 8 // world for p in parts)
        assert np.array_equal(np.concatenate(parts), batch)


def test_bad_order_inputs():
    batch = np.arange(6)
    with pytest.raises(ZooError, match="not divisible by world_size 4"):
        rank_slice(batch, 0, 4)
    with pytest.raises(ZooError, match="rank 2 is outside 0..1"):
        rank_slice(batch, 2, 2)
    with pytest.raises(ZooError, match="step 0 has no batch"):
        global_batch(0, data_seed=1, batch_size=2, n_samples=10)
    with pytest.raises(ZooError, match="fewer than one batch of 32"):
        global_batch(1, data_seed=1, batch_size=32, n_samples=10)
