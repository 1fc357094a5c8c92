"""zoo.per_example: the [seeds, examples] matrix multi_bootstrap takes is one call away, holds the
numbers `zoo compare` resamples and the losses zoo.load's model gives, stored step or replayed;
bad input gets one ZooError listing the choices."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo_common.errors import ZooError
from zoo.eval.comparison import compare
from zoo.eval.heldout import build_heldout
from zoo.stats import multi_bootstrap
from zoo.store.corpora import open_corpus

NAME = "micro-1l32"


@pytest.fixture
def store(evaluated_micro_store):
    """micro (seeds 1, 2; 12 steps), held-out loss evaluated at every stored step (conftest)."""
    return evaluated_micro_store


def _by_hand(store, seed: int, step: int) -> np.ndarray:
    """Each held-out sample's mean next-token cross-entropy, from zoo.load's model."""
    model, _ = zoo.load(NAME, seed=seed, step=step, store=store)
    record = zoo.open_run(NAME, seed=seed, store=store).read_json("run.json")
    corpus = open_corpus(store, record["corpus_fingerprint"])
    tokens = torch.from_numpy(build_heldout(corpus).tokens)
    with torch.no_grad():
        logits = model(input_ids=tokens).logits[:, :-1].float()
    losses = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")
    return losses.double().mean(dim=1).numpy()


def test_the_matrix_is_the_held_out_loss_per_example_of_each_seed(store):
    result = zoo.per_example(NAME, step=12, store=store)
    assert result.values.shape == (2, 64) and result.values.dtype == np.float64
    assert (result.name, result.metric, result.step, result.seeds) == (NAME, "loss", 12, (1, 2))
    assert (result.n_seeds, result.n_examples) == (2, 64) and not result.values.flags.writeable
    np.testing.assert_allclose(result.values[1], _by_hand(store, 2, 12), rtol=1e-5)
    # a row's mean is that seed's `loss` in zoo.metrics, measured on the set it names
    table = zoo.metrics("micro", store=store)
    at = table.filter(pc.field("step") == 12).sort_by("seed")
    assert result.values.mean(axis=1) == pytest.approx(at.column("loss").to_pylist(), rel=1e-6)
    assert set(at.column("heldout.loss").to_pylist()) == {result.heldout}
    assert "docstrings" in result.heldout_rule
    one = zoo.per_example(NAME, step=12, seeds=np.int64(2), store=store)
    assert one.seeds == (2,) and np.array_equal(one.values, result.values[1:])
    both = zoo.per_example(NAME, step=12, seeds=[2, 1], store=store)
    assert both.seeds == (1, 2) and np.array_equal(both.values, result.values)  # ascending seeds


def test_it_is_what_compare_resamples(store):
    result = zoo.per_example(NAME, step=12, store=store)
    compared = compare(NAME, "micro", "loss", store=store, n_resamples=400)
    assert compared.test == multi_bootstrap(
        result.values, result.values, paired=False, seeds_a=result.seeds, seeds_b=result.seeds,
        n_resamples=400,
    )
    assert compared.examples == "64 held-out examples"


def test_a_step_between_checkpoints_is_replayed_as_zoo_load_gives_it(store):
    result = zoo.per_example(NAME, step=5, seeds=[1], store=store)
    assert result.step == 5 and result.values.shape == (1, 64)
    np.testing.assert_allclose(result.values[0], _by_hand(store, 1, 5), rtol=1e-5)


@pytest.mark.parametrize(("arguments", "message"), [
    ({"metric": "icl"}, ("no per-example values for metric 'icl'; metrics with one number per "
                         "example: loss")),
    ({"seeds": [7]}, "family micro has no seed 7; seeds: 1, 2"),
    ({"step": 13}, r"no step 13 for micro-1l32.*stored: .*12"),
    ({"step": 2.5}, "step must be an integer, got 2.5"),
    ({"name": "micro-9l9"}, "family micro has no size 9l9; sizes: 1l32"),
    ({"name": "ghost-1l32"}, "no family 'ghost'.*families: micro"),
    ({"name": "micro"}, "invalid model name 'micro'"),
    ({"heldout_samples": 0}, "heldout_samples must be >= 1"),
])
def test_bad_input_gets_one_error_listing_the_choices(store, arguments, message):
    arguments = {"name": NAME, "step": 12, **arguments}
    with pytest.raises(ZooError, match=message):
        zoo.per_example(arguments.pop("name"), store=store, **arguments)
