"""The public Python API takes what researchers pass (numpy integers from arrays) and refuses,
with one ZooError naming the argument, what would silently give another run's data or another
step (1.5 -> seed 1, 2.5 -> step 2, None -> no NaN policy at all)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from micro_family import write_manifest

import zoo
from zoo_common.errors import ZooError
from training.sweep import train_family
from zoo.eval.evaluate import evaluate_family
from zoo.stats import event_step, event_timing, multi_bootstrap, seed_interval, seed_intervals
from zoo.store.store import Store

NAME = "micro-1l32"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    store = Store.open(str(folder / "store"))
    train_family(write_manifest(folder, seeds=[1, 2]), store=store, threads=2, progress=False)
    return store


def test_numpy_integers_are_integers(store):
    assert zoo.steps(NAME, seed=np.int64(1), store=store) == zoo.steps(NAME, seed=1, store=store)
    assert torch.equal(zoo.batch(NAME, seed=np.int64(2), step=np.int32(5), store=store),
                       zoo.batch(NAME, seed=2, step=5, store=store))
    history = zoo.tensor_history(NAME, seed=1, tensor="gpt_neox.embed_in.weight",
                                 steps=np.array([4, 8]), store=store)
    assert history.steps == [4, 8]
    assert zoo.snapshot(NAME, seed=np.int64(1), step=np.int64(8), store=store).exists()


@pytest.mark.parametrize("call, message", [
    (lambda s: zoo.batch(NAME, seed=1.5, step=5, store=s), "invalid seed 1.5"),
    (lambda s: zoo.batch(NAME, seed="1", step=5, store=s), "invalid seed '1'"),
    (lambda s: zoo.batch(NAME, seed=1, step=5.5, store=s), "step must be an integer, got 5.5"),
    (lambda s: zoo.batch(NAME, seed=1, step=True, store=s), "step must be an integer, got True"),
    (lambda s: zoo.steps_of(NAME, seed=1, sample=7.5, store=s), "sample must be an integer"),
    (lambda s: zoo.replay(NAME, seed=1, step="8", store=s), "step must be an integer, got '8'"),
    (lambda s: zoo.replay(NAME, seed=1, step=8, threads=0, store=s), "threads must be >= 1"),
    (lambda s: zoo.load(NAME, seed=1, step=8, device="bogus", store=s), "unknown device 'bogus'"),
    (lambda s: zoo.tensor_history(NAME, seed=1, tensor=None, store=s), "tensor must be a tensor's name"),
    (lambda s: zoo.tensor_history(NAME, seed=1, tensor="lm_head.weight", steps=8, store=s),
     "steps must be a list"),
    (lambda s: zoo.steps(NAME, seed=1, store=5), "a store is a folder or URL"),
])
def test_wrong_types_get_one_error_naming_the_argument(store, call, message):
    with pytest.raises(ZooError, match=message.replace("(", r"\(").replace(".", r"\.")):
        call(store)


def test_a_path_holding_no_store_is_an_error_not_an_empty_store(tmp_path):
    for call in (zoo.list_models, lambda store: zoo.metrics("micro", store=store),
                 lambda store: evaluate_family("micro", ["loss"], store=store, progress=False)):
        with pytest.raises(ZooError, match="no Model Zoo store at"):
            call(store=str(tmp_path / "typo"))
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("call, message", [
    (lambda: seed_interval([1.0, np.nan, 3.0, 4.0], nan_policy=None), "unknown nan_policy None"),
    (lambda: seed_interval([1.0, 2.0, 3.0], method=None), "unknown interval method None"),
    (lambda: seed_interval([1.0, 2.0, 3.0], rng_seed=None), "rng_seed must be a non-negative"),
    (lambda: seed_interval([1.0, 2.0, 3.0], n_resamples=True), "n_resamples must be a positive"),
    (lambda: seed_interval([1.0, 2.0, 3.0], confidence="0.95"), "confidence must be a number"),
    (lambda: multi_bootstrap(np.ones((3, 4)), np.zeros((3, 4)), paired="no"), "paired must be True or False"),
    (lambda: event_timing([0, 1, 2], [[0, 1, 2], [0, 0, 1], [1, 1, 2]], seeds=[1, 1, 2], threshold=0.5),
     "seed label(s) 1 appear more than once"),
    (lambda: event_step([0.5, 1.5, 2.5], [0, 1, 2], threshold=0.5), "steps must be whole numbers"),
    (lambda: event_step([0, 1, np.nan], [0, 1, 2], threshold=0.5), "steps must be whole numbers"),
    (lambda: event_step([0, 1, 2], [0, 1, 2], threshold=np.nan), "threshold must be a finite number"),
    (lambda: seed_intervals({"step": [1, 1, np.nan, np.nan], "seed": [1, 2, 1, 2],
                             "value": [1.0, 2.0, 3.0, 4.0]}), "steps must be whole numbers"),
    (lambda: seed_intervals({"step": [1, 1, 2], "seed": [1, 2], "value": [1.0, 2.0, 3.0]}),
     "columns must be 1-D and of equal length; got step: 3, seed: 2, value: 3"),
    (lambda: seed_interval([1 + 2j, 2.0, 3.0]), "must be real numbers, got complex"),
    (lambda: seed_interval(["a", "b"]), "must be numbers"),
    (lambda: multi_bootstrap([[1.0, 2.0], [3.0]], [[1.0, 2.0], [3.0, 4.0]], paired=True),
     "arm a must be a rectangular array"),
    (lambda: event_timing([0, 1], [[0, 1], [1]], threshold=0.5), "rectangular array"),
])
def test_statistics_options_are_checked_never_ignored(call, message):
    with pytest.raises(ZooError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_evaluate_takes_numpy_results_and_refuses_a_metric_that_edits_the_model(store):
    def half(model, tokenizer):
        return np.float32(0.5)

    report = evaluate_family("micro", {"half": half}, store=store, seeds=1, progress=False)
    assert report.rows_written > 0 and report.nan_results == ()

    def zeroes(model, tokenizer):
        for parameter in model.parameters():
            parameter.zero_()
        return 0.0

    with pytest.raises(ZooError, match="metric 'zeroes' changed the model's weights in place"):
        evaluate_family("micro", [zeroes], store=store, seeds=[1], progress=False)
    with pytest.raises(ZooError, match="metric name 'a.b' is not a Python identifier"):
        evaluate_family("micro", {"a.b": half}, store=store, progress=False)
    with pytest.raises(ZooError, match="metrics is a name, a function, or a list"):
        evaluate_family("micro", 5, store=store, progress=False)
