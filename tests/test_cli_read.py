"""The read-side CLI by model name: replay verdicts and exit codes, batches, steps of a sample,
and one clear line (no traceback) for bad input."""
from __future__ import annotations

import numpy as np
import pytest

import zoo
from data_index import global_batch
from training.sweep import train_family
from zoo.cli import main
from zoo.store import Store

from micro_family import write_manifest


@pytest.fixture(scope="module")
def store_url(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    store = Store.open(str(folder / "store"))
    train_family(write_manifest(folder, seeds=[1]), store=store, threads=2, progress=False)
    return store.url


def test_replay_prints_verdict_first_and_exits_0_when_exact(store_url, capsys):
    assert main(["replay", "micro-1l32", "--seed", "1", "--step", "12", "--store", store_url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("EXACT micro-1l32/seed-1 step 12 (from keyframe 8)")
    assert any("threads=2" in line for line in out)


def test_replay_exits_1_when_it_differs(store_url, capsys):
    code = main(["replay", "micro-1l32", "--seed", "1", "--step", "24", "--threads", "1",
                 "--store", store_url])
    assert code == 1
    assert capsys.readouterr().out.startswith("DIFFERS")


def test_replay_all_checks_every_stored_step(store_url, capsys):
    assert main(["replay", "micro-1l32", "--seed", "1", "--all", "--store", store_url]) == 0
    assert "stored steps replayed bit-exactly" in capsys.readouterr().out


def test_batch_and_steps_of_agree_with_the_order_function(store_url, capsys):
    n = zoo.batches.open_run_data("micro-1l32", seed=1, store=store_url)[0].n_samples
    expected = global_batch(5, data_seed=1, batch_size=8, n_samples=n)
    assert main(["batch", "micro-1l32", "--seed", "1", "--step", "5", "--ids",
                 "--store", store_url]) == 0
    assert [int(x) for x in capsys.readouterr().out.split()] == expected.tolist()
    batch = zoo.batch("micro-1l32", seed=1, step=5, store=store_url)
    assert batch.shape == (8, 32)
    sample = int(expected[3])
    assert 5 in zoo.steps_of("micro-1l32", seed=1, sample=sample, store=store_url)
    assert main(["steps-of", "micro-1l32", "--seed", "1", "--sample", str(sample),
                 "--store", store_url]) == 0
    assert "step 5  position 3" in capsys.readouterr().out
    assert main(["batch", "micro-1l32", "--seed", "1", "--step", "5", "--store", store_url]) == 0
    text = capsys.readouterr().out
    assert text.count("--- position") == 8 and np.all(batch.numpy() >= 0)


@pytest.mark.parametrize("argv, message", [
    (["replay", "micro-1l32", "--seed", "1", "--step", "0"], "step 0 is the initial weights"),
    (["replay", "micro-1l32", "--seed", "1", "--step", "500"], "1..24"),
    (["replay", "micro-1l32", "--seed", "7", "--step", "5"], "seeds: 1"),
    (["replay", "nope-1l32", "--seed", "1", "--step", "5"], "micro-1l32"),
    (["batch", "micro-1l32", "--seed", "1", "--step", "99"], "1..24"),
    (["steps-of", "micro-1l32", "--seed", "1", "--sample", "-3"], "does not exist"),
])
def test_bad_input_gets_one_clear_line(store_url, capsys, argv, message):
    assert main([*argv, "--store", store_url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo: error:") and message in err and "Traceback" not in err
