"""What data a step saw, and which steps saw a sample: the data index, by model name.

The step index and corpus of a run are opened once per process and kept (while the store still
holds what they were opened from), so repeated queries cost milliseconds (steps_of builds its
inverted index on first use). On a branch (`branch=`), a
step up to the branch point is answered from the parent's index (zoo.store.lineage), so a
branch's history reads as one run.
"""
from __future__ import annotations

import hashlib
import json

import torch

from data_index import Corpus, StepIndex
from zoo_common.arguments import whole_number
from zoo_common.errors import NotFoundError, ZooError
from zoo.store.corpora import open_corpus
from zoo.store.lineage import batch_owner, lineage
from zoo.store.run_store import RunStore
from zoo.store.store import Store


def batch(name: str, *, seed: int, step: int, store: str | Store | None = None,
          branch: str | None = None) -> torch.Tensor:
    """The batch of `step` exactly as trained: LongTensor [batch, seq_len] of tokens, or for drawn
    features (the superposition family) FloatTensor [batch, features]."""
    step = whole_number(step, "step")
    corpus, index = run_data(batch_owner(_run(name, seed, store, branch), step))
    return torch.from_numpy(batch_values(corpus, index, index.batch_ids(step)))


def batch_values(corpus, index: StepIndex, ids):
    """The values of samples `ids` as the run trained on them: a text corpus's tokens, or drawn
    features, which are a function of the run's data seed (the index's header records it)."""
    if getattr(corpus, "drawn", False):
        return corpus.samples(ids, data_seed=index.data_seed)
    return corpus.samples(ids)


def batch_ids(name: str, *, seed: int, step: int, store: str | Store | None = None,
              branch: str | None = None):
    """The sample ids of `step`'s batch, in order."""
    step = whole_number(step, "step")
    return run_data(batch_owner(_run(name, seed, store, branch), step))[1].batch_ids(step)


def steps_of(name: str, *, seed: int, sample: int, store: str | Store | None = None,
             branch: str | None = None) -> list[int]:
    """The steps whose batch held `sample` (ascending; a sample appears once per epoch)."""
    return sorted({step for step, _ in placements_of(name, seed=seed, sample=sample, store=store,
                                                     branch=branch)})


def placements_of(name: str, *, seed: int, sample: int, store: str | Store | None = None,
                  branch: str | None = None) -> list[tuple[int, int]]:
    """(step, position) of every batch slot that held `sample`, ascending; on a branch, its
    parent's slots up to the branch point and then its own."""
    sample = whole_number(sample, "sample")
    found = []
    line = lineage(_run(name, seed, store, branch))
    for k, (run, upto) in enumerate(line):
        corpus, index = run_data(run)
        if k == 0:
            if not 0 <= sample < corpus.n_samples:
                raise NotFoundError(f"sample {sample} does not exist: the corpus has samples "
                               f"0..{corpus.n_samples - 1}")
            own = corpus.fingerprint
        elif corpus.fingerprint != own:  # a branch on other data: its ids name other samples
            break
        after = line[k + 1][1] if k + 1 < len(line) else 0  # the older run answers up to there
        found += [(s, p) for s, p in index.steps_of(sample) if s > after and (upto is None or s <= upto)]
    return sorted(found)


def _run(name: str, seed: int, store, branch: str | None) -> RunStore:
    from zoo.store.catalog import open_run

    return open_run(name, seed=seed, store=store, branch=branch)


def open_run_data(name: str, *, seed: int, store=None, branch: str | None = None
                  ) -> tuple[Corpus, StepIndex]:
    """The run's corpus and data index, opened once per process and checked to belong together."""
    return run_data(_run(name, seed, store, branch))


def run_data(run: RunStore) -> tuple[Corpus, StepIndex]:
    """`open_run_data` of an opened run. Kept per process under what it was opened from (the
    run's record, the index's header and parts): a run retrained in place, or one that trained
    on since, is opened again instead of answered from memory."""
    store = run.store
    record = run.read_json("run.json")
    header = run.index_record()
    key = (store.url, run.run_id.key, _digest(record), _digest(header),
           tuple(run.index_location.list()))
    if key not in _OPENED:
        corpus = open_corpus(store, record["corpus_fingerprint"])
        index = StepIndex.open(run.index_location, header=header)
        if index.corpus_fingerprint != corpus.fingerprint:
            raise ZooError(f"{run.run_id.key}: index fingerprint {index.corpus_fingerprint[:16]}… "
                           f"does not match corpus {corpus.fingerprint[:16]}…")
        if len(_OPENED) >= 32:
            _OPENED.pop(next(iter(_OPENED)))
        _OPENED[key] = (corpus, index)
    return _OPENED[key]


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


# (store, run, what it was opened from) -> (corpus, index); at most 32 runs are kept
_OPENED: dict[tuple, tuple[Corpus, StepIndex]] = {}
