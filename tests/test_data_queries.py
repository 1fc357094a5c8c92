"""Queries and the `zoo data` CLI: a step's batch equals what the order and the tokens give."""
import argparse

import numpy as np
import pytest

from data_index import StepIndex, StepIndexWriter, global_batch, prepare_corpus
from data_index.cli import register
from zoo_common.errors import ZooError
from zoo_common.location import open_location
from data_index.queries import batch_text, batch_tokens, documents_at

SEED, B, STEPS = 11, 4, 30


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("q")
    corpus = prepare_corpus("builtin:pydoc?max_docs=20", root / "corpus", vocab_size=300, seq_len=32, progress=False)
    loc = open_location(root / "index")
    with StepIndexWriter(loc, corpus_fingerprint=corpus.fingerprint, data_seed=SEED, batch_size=B,
                         n_samples=corpus.n_samples, flush_every=8) as writer:
        for step in range(1, STEPS + 1):
            writer.append(step, global_batch(step, data_seed=SEED, batch_size=B, n_samples=corpus.n_samples))
    return corpus, StepIndex.open(loc), root


def test_batch_equals_order_and_tokens(run):
    corpus, index, _ = run
    raw = np.memmap(corpus.folder / "tokens.bin", dtype=corpus.dtype, mode="r").reshape(-1, corpus.seq_len)
    for step in (1, 13, STEPS):
        ids = global_batch(step, data_seed=SEED, batch_size=B, n_samples=corpus.n_samples)
        got = batch_tokens(corpus, index, step)
        assert got.shape == (B, corpus.seq_len) and got.dtype == np.int64
        assert np.array_equal(got, raw[ids].astype(np.int64))
    texts = batch_text(corpus, index, 5)
    assert texts == [corpus.decode(row) for row in batch_tokens(corpus, index, 5)]
    docs = documents_at(corpus, index, 5)
    assert docs and set(docs) == {d for s in index.batch_ids(5) for d in corpus.documents_of(int(s))}


def test_index_of_another_corpus_is_refused(run, tmp_path):
    corpus, _, _ = run
    loc = open_location(tmp_path / "other")
    with StepIndexWriter(loc, corpus_fingerprint="f" * 64, data_seed=SEED, batch_size=B, n_samples=corpus.n_samples) as w:
        w.append(1, global_batch(1, data_seed=SEED, batch_size=B, n_samples=corpus.n_samples))
    with pytest.raises(ZooError, match=f"recorded on corpus {'f' * 64}, but .* is corpus {corpus.fingerprint}"):
        batch_tokens(corpus, StepIndex.open(loc), 1)


def _parser():
    parser = argparse.ArgumentParser(prog="zoo")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def _run(argv):
    args = _parser().parse_args(argv)
    return args.handler(args)


def test_cli_prepare_show_find(run, tmp_path, capsys):
    corpus, index, root = run
    assert _run(["data", "prepare", "builtin:modular?p=5", "--out", str(tmp_path / "m"),
                 "--seq-len", "4"]) == 0
    out = capsys.readouterr().out
    assert "fingerprint " in out and "documents   25" in out and "samples " in out and "vocab " in out
    assert _run(["data", "show", "--corpus", str(corpus.folder), "--index", str(root / "index"), "--step", "3",
                 "--max-chars", "0"]) == 0
    out = capsys.readouterr().out
    for sample, text in zip(index.batch_ids(3), batch_text(corpus, index, 3)):
        assert f"sample {sample} " in out and text in out
    sample = int(index.batch_ids(7)[2])
    assert _run(["data", "find", "--corpus", str(corpus.folder), "--index", str(root / "index"),
                 "--sample", str(sample)]) == 0
    out = capsys.readouterr().out
    assert "step 7\tposition 2" in out
    assert out.count("\tposition ") == len(index.steps_of(sample))


def test_cli_step_beyond_range_names_the_range(run):
    corpus, _, root = run
    with pytest.raises(ZooError, match=rf"step {STEPS + 5} is not in the data index .* steps 1\.\.{STEPS}"):
        _run(["data", "show", "--corpus", str(corpus.folder), "--index", str(root / "index"), "--step", str(STEPS + 5)])


def test_cli_help_teaches_with_examples(capsys):
    for command in ("prepare", "show", "find"):
        with pytest.raises(SystemExit):
            _parser().parse_args(["data", command, "--help"])
        text = capsys.readouterr().out
        assert "example:" in text and f"zoo data {command}" in text
        if command == "prepare":
            assert all(f"builtin:{name}" in text for name in ("pydoc", "induction", "modular"))
