"""What data a step saw, and which steps saw a sample: the data index, by model name.

The step index and corpus of a run are opened once per process and kept, so repeated queries
cost milliseconds (steps_of builds its inverted index on first use).
"""
from __future__ import annotations

import torch

from data_index import Corpus, StepIndex
from zoo_common.arguments import whole_number
from zoo_common.errors import ZooError
from zoo.store.corpora import open_corpus
from zoo.config.names import check_seed
from zoo.store.store import Store


def batch(name: str, *, seed: int, step: int, store: str | Store | None = None) -> torch.Tensor:
    """The token batch of `step` exactly as trained: LongTensor [batch, seq_len]."""
    corpus, index = open_run_data(name, seed=seed, store=store)
    return torch.from_numpy(corpus.samples(index.batch_ids(whole_number(step, "step"))))


def batch_ids(name: str, *, seed: int, step: int, store: str | Store | None = None):
    """The sample ids of `step`'s batch, in order."""
    return open_run_data(name, seed=seed, store=store)[1].batch_ids(whole_number(step, "step"))


def steps_of(name: str, *, seed: int, sample: int, store: str | Store | None = None) -> list[int]:
    """The steps whose batch held `sample` (ascending; a sample appears once per epoch)."""
    return sorted({step for step, _ in placements_of(name, seed=seed, sample=sample, store=store)})


def placements_of(name: str, *, seed: int, sample: int,
                  store: str | Store | None = None) -> list[tuple[int, int]]:
    """(step, position) of every batch slot that held `sample`, ascending."""
    corpus, index = open_run_data(name, seed=seed, store=store)
    sample = whole_number(sample, "sample")
    if not 0 <= sample < corpus.n_samples:
        raise ZooError(f"sample {sample} does not exist: the corpus has samples 0..{corpus.n_samples - 1}")
    return index.steps_of(sample)


def open_run_data(name: str, *, seed: int, store=None) -> tuple[Corpus, StepIndex]:
    """The run's corpus and data index, opened once per process and checked to belong together."""
    from zoo.store.catalog import open_run, open_store

    store = open_store(store)
    key = (store.url, name, check_seed(seed))
    if key not in _OPENED:
        run = open_run(name, seed=key[2], store=store)
        corpus = open_corpus(store, run.read_json("run.json")["corpus_fingerprint"])
        index = StepIndex.open(run.index_location)
        if index.corpus_fingerprint != corpus.fingerprint:
            raise ZooError(f"{run.run_id.key}: index fingerprint {index.corpus_fingerprint[:16]}… "
                           f"does not match corpus {corpus.fingerprint[:16]}…")
        if len(_OPENED) >= 32:
            _OPENED.pop(next(iter(_OPENED)))
        _OPENED[key] = (corpus, index)
    return _OPENED[key]


# (store url, name, seed) -> (corpus, index); a run's recorded data never changes once written.
_OPENED: dict[tuple[str, str, int], tuple[Corpus, StepIndex]] = {}
