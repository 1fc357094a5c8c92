"""The superposition family's parts: data drawn afresh from (data seed, sample), the ReLU output
model as a transformers model that opens without zoo, training that replays EXACT and whose
batches zoo.batch draws again, the measures on configurations whose answer is known, and bad
input refused with the field named."""
from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

import zoo
from data_index.features import FeatureRecipe
from training.sweep import train_family
from zoo.config.manifest import load_manifest
from zoo.eval.superposition_metrics import feature_geometry, ground_truth_score, kgon
from zoo.store.store import Store

MICRO = {
    "family": "spmicro",
    "architecture": "superposition",
    "sizes": [
        {"name": "n6m2s0", "width": 2, "source": "builtin:sparse_features?n=6&sparsity=0&importance=0.7"},
        {"name": "n6m2s0.9", "width": 2, "source": "builtin:sparse_features?n=6&sparsity=0.9&importance=1"},
    ],
    "seeds": [1, 2],
    "data": {"source": "builtin:sparse_features?n=6&sparsity=0.9&importance=1"},
    "optimizer": {"lr": 1e-2, "betas": [0.9, 0.999], "weight_decay": 0.0, "clip": 0},
    "schedule": {"kind": "constant", "warmup_steps": 0},
    "batch_size": 256,
    "steps": 300,
    "checkpoints": {"log_spaced_until": 16, "every": 50, "keyframe_every": 100},
}


def _manifest(folder, **overrides) -> str:
    path = folder / "spmicro.yaml"
    path.write_text(yaml.safe_dump({**MICRO, **overrides}, sort_keys=False))
    return str(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("superposition")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_CACHE", str(folder / "cache"))
        store = Store.open(str(folder / "store"))
        train_family(_manifest(folder), store=store, threads=1, progress=False)
        yield folder, store


def test_features_are_a_pure_function_of_data_seed_and_sample():
    recipe = FeatureRecipe.parse("builtin:sparse_features?n=20&sparsity=0.9&importance=0.7")
    batch = recipe.draw(np.arange(1000, 3000), data_seed=3)
    assert batch.shape == (2000, 20) and batch.dtype == np.float32
    assert np.array_equal(batch, recipe.draw(np.arange(1000, 3000), data_seed=3))
    assert np.array_equal(batch[[5, 1]], recipe.draw(np.array([1005, 1001]), data_seed=3))
    assert not np.array_equal(batch, recipe.draw(np.arange(1000, 3000), data_seed=4))
    many = recipe.draw(np.arange(200_000), data_seed=1)
    assert abs((many > 0).mean() - 0.1) < 0.003  # on with probability 1 - sparsity
    assert abs(many[many > 0].mean() - 0.5) < 0.01 and many.max() < 1.0  # uniform on [0, 1)
    assert np.allclose(recipe.importance_vector(), 0.7 ** np.arange(20))


@pytest.mark.parametrize("source, words", [
    ("builtin:sparse_features?sparsity=1", "sparsity .* must be in \\[0, 1\\), got 1.0"),
    ("builtin:sparse_features?sparsity=-0.1", "sparsity .* must be in \\[0, 1\\)"),
    ("builtin:sparse_features?n=0", "n \\(features\\) must be >= 1"),
    ("builtin:sparse_features?importance=0", "importance .* must be > 0"),
    ("builtin:sparse_features?n=2.5", "n must be a whole number"),
    ("builtin:sparse_features?density=0.1", "no parameter 'density'; valid: n, sparsity, importance"),
])
def test_bad_feature_sources_name_the_field(source, words):
    with pytest.raises(zoo.InvalidInputError, match=words):
        FeatureRecipe.parse(source)


def test_a_bad_superposition_manifest_names_the_field(tmp_path):
    wide = {"name": "wide", "width": 8, "source": "builtin:sparse_features?n=6"}
    with pytest.raises(zoo.ManifestError, match="size 'wide': width: .* 8 for 6 features"):
        load_manifest(_manifest(tmp_path, sizes=[wide]))
    layered = {"name": "l2", "width": 2, "layers": 2, "source": "builtin:sparse_features?n=6"}
    with pytest.raises(zoo.ManifestError, match="size 'l2': layers: the superposition model has no layers"):
        load_manifest(_manifest(tmp_path, sizes=[layered]))
    bad = {"name": "bad", "width": 2, "source": "builtin:sparse_features?n=6&sparsity=1.5"}
    with pytest.raises(zoo.ManifestError, match="size 'bad': source: .*sparsity"):
        load_manifest(_manifest(tmp_path, sizes=[bad]))
    with pytest.raises(zoo.ManifestError, match="size 'x': layers: is required for architecture gpt-neox"):
        load_manifest(_manifest(tmp_path, architecture="gpt-neox",
                                sizes=[{"name": "x", "width": 8, "heads": 2}]))


def test_stored_steps_replay_exact_and_zoo_batch_is_the_batch_each_step_trained_on(trained):
    _, store = trained
    name = "spmicro-n6m2s0.9"
    assert zoo.replay(name, seed=1, step=250, store=store).exact
    run = zoo.open_run(name, seed=1, store=store)
    recorded = {row["step"]: row["train_loss"] for row in zoo.metrics("spmicro", store=store).filter(
        _is(zoo.metrics("spmicro", store=store), name="n6m2s0.9", seed=1)).to_pylist()}
    for step in (1, 17, 101):  # the loss training recorded = the model before the step on zoo.batch
        before, _ = zoo.load(name, seed=1, step=step - 1, store=store)
        batch = zoo.batch(name, seed=1, step=step, store=store)
        assert batch.shape == (256, 6) and batch.dtype == torch.float32
        with torch.no_grad():
            assert float(before(features=batch).loss) == pytest.approx(recorded[step], rel=1e-6)
    assert run.checkpoint_steps()[:3] == [0, 1, 2]
    with pytest.raises(zoo.InvalidInputError, match="drawn afresh for every step"):
        zoo.steps_of(name, seed=1, sample=5, store=store)


def _is(table, *, name, seed):
    import pyarrow.compute as pc

    return pc.and_(pc.equal(table["size"], name), pc.equal(table["seed"], seed))


def test_the_same_seed_gives_the_same_bits_and_another_seed_other_bits(trained, tmp_path):
    folder, store = trained
    again = Store.open(str(tmp_path / "again"))
    train_family(_manifest(tmp_path), store=again, threads=1, progress=False, only=["n6m2s0.9/1"])
    ours = zoo.open_run("spmicro-n6m2s0.9", seed=1, store=store).read_checkpoint(300).tensors
    theirs = zoo.open_run("spmicro-n6m2s0.9", seed=1, store=again).read_checkpoint(300).tensors
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    other = zoo.open_run("spmicro-n6m2s0.9", seed=2, store=store).read_checkpoint(300).tensors
    assert not torch.equal(ours["W"], other["W"])


HIDDEN = """
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("zoo", "training", "data_index", "zoo_common"):
            raise ImportError(f"{name} is hidden from this process")
sys.meta_path.insert(0, Hide())
from safetensors.torch import save_file
from transformers import AutoModel
model = AutoModel.from_pretrained(sys.argv[2], trust_remote_code=True)
save_file({"W": model.W.detach().contiguous(), "b": model.b.detach().contiguous()}, sys.argv[1])
print(type(model).__name__, tuple(model.W.shape), tuple(model.b.shape))
"""


def test_w_and_b_open_with_automodel_where_zoo_cannot_be_imported(trained, tmp_path):
    from safetensors.torch import load_file

    _, store = trained
    path = zoo.snapshot("spmicro-n6m2s0.9", seed=1, step=150, store=store)  # replayed, not stored
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str(tmp_path / "hf-modules")
    out = tmp_path / "weights.safetensors"
    done = subprocess.run([sys.executable, "-c", HIDDEN, str(out), str(path)], capture_output=True,
                          text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[0] == "ZooSuperpositionModel"
    model, tokenizer = zoo.load("spmicro-n6m2s0.9", seed=1, step=150, store=store)
    assert tokenizer is None and tuple(model.W.shape) == (2, 6) and tuple(model.b.shape) == (6,)
    loaded = load_file(out)
    assert torch.equal(loaded["W"], model.W.detach()) and torch.equal(loaded["b"], model.b.detach())


def test_the_measures_read_the_geometry_of_known_configurations():
    identity = np.eye(2)
    geometry = feature_geometry(identity)
    assert np.allclose(geometry["dimensionality"], 1) and np.allclose(geometry["interference"], 0)
    antipodal = np.array([[1.0, -1.0]])  # two features sharing one dimension
    assert np.allclose(feature_geometry(antipodal)["dimensionality"], 0.5)
    angles = 2 * math.pi * np.arange(5) / 5 + 0.3
    pentagon = np.stack([np.cos(angles), np.sin(angles)])
    assert np.allclose(feature_geometry(pentagon)["dimensionality"], 0.4)
    k, irregular = kgon(pentagon)
    assert k == 5 and irregular < 1e-9
    with_dead = np.concatenate([pentagon[:, :4], np.zeros((2, 2))], axis=1)
    k, irregular = kgon(with_dead)
    assert k == 4 and irregular == pytest.approx(0.6)  # one gap of 144 degrees where 90 are ideal
    assert ground_truth_score(pentagon.T, pentagon) == pytest.approx(1.0)
    assert ground_truth_score(-pentagon.T, pentagon) < 0.9  # a feature's negative is no match
    assert ground_truth_score(np.eye(2), pentagon) < 0.9


def test_zoo_eval_measures_superposition_and_refuses_token_metrics(trained, capsys):
    from zoo.cli import main

    _, store = trained
    url = str(store.location.local_path())
    assert main(["eval", "spmicro", "--metric", "superposition", "--store", url, "--quiet"]) == 0
    table = zoo.metrics("spmicro", store=store)
    last = table.filter(_is(table, name="n6m2s0", seed=1)).to_pylist()[-1]
    assert last["superposition.represented"] <= 3  # no sparsity: about m = 2 features, no more
    assert last["superposition.kgon_k"] == last["superposition.represented"]
    capsys.readouterr()
    assert main(["eval", "spmicro", "--metric", "loss", "--store", url, "--quiet"]) == 2
    assert "reads feature vectors" in capsys.readouterr().err


def test_zoo_batch_prints_feature_vectors(trained, capsys):
    from zoo.cli import main

    _, store = trained
    url = str(store.location.local_path())
    assert main(["batch", "spmicro-n6m2s0", "--seed", "1", "--step", "3", "--store", url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 256 and lines[0].startswith("position 0  sample 512:")
    first = zoo.batch("spmicro-n6m2s0", seed=1, step=3, store=store)[0]
    assert lines[0].split(":")[1].split() == [f"{v:.3f}" if v else "0" for v in first.tolist()]


def test_branches_of_a_superposition_run(trained):
    from training.branching import branch

    _, store = trained
    name = "spmicro-n6m2s0.9"
    branch(name, seed=1, from_step=150, label="slow", store=store, progress=False, lr_scale=0.5)
    assert zoo.replay(name, seed=1, step=200, store=store, branch="slow").exact
    branch(name, seed=1, from_step=150, label="denser", store=store, progress=False,
           replace_data="builtin:sparse_features?n=6&sparsity=0.5&importance=1")
    dense = zoo.batch(name, seed=1, step=151, store=store, branch="denser")
    assert (dense > 0).float().mean() > 0.4  # the other sparsity from the branch point on
    with pytest.raises(zoo.ArgumentError, match="nothing to drop"):
        branch(name, seed=1, from_step=150, label="drop", store=store, progress=False,
               drop_samples=[1, 2])
    with pytest.raises(zoo.ArgumentError, match="change the sparsity"):
        branch(name, seed=1, from_step=150, label="other", store=store, progress=False,
               replace_data="builtin:sparse_features?n=7&sparsity=0.5&importance=1")


def test_a_dictionary_on_the_hidden_vector_recovers_the_true_features(trained):
    """Scored from the loaded weights against W, not read from the record."""
    from zoo.eval.superposition_metrics import ground_truth_score

    _, store = trained
    name = "spmicro-n6m2s0.9"
    zoo.train_dict(name, seed=1, step=300, site="hidden", width=6, k=1, steps=400, batch=256,
                   store=store)
    d = zoo.load_dict(name, seed=1, step=300, site="hidden", store=store)
    model, _ = zoo.load(name, seed=1, step=300, store=store)
    score = ground_truth_score(d.W_dec.detach(), model.W.detach())
    assert score >= 0.85  # in 2 dimensions 6 random directions score high too (0.96 for seed 0):
    # the claim is measured in 5 dimensions against that null by examples/superposition_dictionaries.py
    assert d.record["quality"]["ground_truth_mmcs"] == pytest.approx(
        ground_truth_score(d.W_dec.detach(), model.W.detach()))
