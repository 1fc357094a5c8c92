"""The read-side CLI by model name: replay verdicts and exit codes, batches, steps of a sample,
and one clear line (no traceback) for bad input."""
from __future__ import annotations

import numpy as np
import pytest

import zoo
import zoo.registry.batches
from data_index import global_batch
from training.sweep import train_family
from zoo.cli import main
from zoo.store.store import Store

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


def test_replay_of_a_step_that_is_not_stored_says_nothing_was_compared(store_url, capsys):
    assert main(["replay", "micro-1l32", "--seed", "1", "--step", "3", "--store", store_url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("REPLAYED") and "replayed (none stored at this step to compare)" in out
    assert " compared, 0 differ" not in out


def test_replay_exits_1_when_it_differs(store_url, capsys):
    code = main(["replay", "micro-1l32", "--seed", "1", "--step", "24", "--threads", "1",
                 "--store", store_url])
    assert code == 1
    assert capsys.readouterr().out.startswith("DIFFERS")


def test_replay_all_checks_every_stored_step(store_url, capsys):
    assert main(["replay", "micro-1l32", "--seed", "1", "--all", "--store", store_url]) == 0
    assert "stored steps replayed bit-exactly" in capsys.readouterr().out


def test_batch_and_steps_of_agree_with_the_order_function(store_url, capsys):
    n = zoo.registry.batches.open_run_data("micro-1l32", seed=1, store=store_url)[0].n_samples
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
    (["history", "micro-1l32", "--seed", "1", "--tensor", "gpt_neox.embed_in.weight",
      "--out", "/nonexistent-folder/h.safetensors"],
     ("--out /nonexistent-folder/h.safetensors: the folder /nonexistent-folder does not exist")),
    (["history", "micro-1l32", "--seed", "1", "--tensor", "nope"], "gpt_neox.embed_in.weight"),
    (["export", "micro-1l32", "--seed", "1", "--to", "exports", "--private"], "add --push"),
    (["export", "micro-1l32", "--seed", "1", "--to", ""], "--to is empty"),
])
def test_bad_input_gets_one_clear_line(store_url, capsys, argv, message):
    assert main([*argv, "--store", store_url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo: error:") and message in err and "Traceback" not in err


def test_output_into_a_closed_pipe_ends_quietly(store_url):
    """`zoo batch ... | head -1`: the reader leaves early; no 'Broken pipe' error, exit 0."""
    import os
    import subprocess
    import sys

    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = ("import sys; from zoo.cli import main; "
              f"sys.exit(main(['batch', 'micro-1l32', '--seed', '1', '--step', '5', '--store', {store_url!r}]))")
    # wait for the whole output to be produced, then close the pipe unread: the write fails
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(root)})
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, stderr
    assert "Broken pipe" not in stderr and "Traceback" not in stderr


def test_every_command_help_says_what_it_does_and_shows_an_example():
    import argparse

    from zoo.cli import build_parser

    def commands(parser, path=()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield (*path, name), sub
                    yield from commands(sub, (*path, name))

    found = list(commands(build_parser()))
    assert len(found) >= 19
    for path, sub in found:
        text = sub.format_help()
        assert sub.description, f"zoo {' '.join(path)} --help has no description"
        assert "example" in text.lower(), f"zoo {' '.join(path)} --help shows no example"


def test_zoo_eval_help_names_every_metric():
    from zoo.cli import build_parser
    from zoo.eval.metrics import METRICS

    parser = build_parser()
    text = next(a for a in parser._actions if a.dest == "command").choices["eval"].format_help()
    assert all(name in text for name in METRICS), [m for m in METRICS if m not in text]
