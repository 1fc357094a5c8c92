"""Questions asked of a run's data: a step's batch as tokens or text, the documents a step saw.

Every query first checks that the index was recorded against this very corpus (same fingerprint),
so an index can never be read against other tokens by mistake.
"""
from __future__ import annotations

import numpy as np

from data_index.corpus import Corpus
from zoo_common.errors import ZooError
from data_index.step_index import StepIndex


def check_pairing(corpus: Corpus, index: StepIndex) -> None:
    if index.corpus_fingerprint != corpus.fingerprint:
        raise ZooError(
            f"the data index at {index.location.url} was recorded on corpus {index.corpus_fingerprint}, "
            f"but {corpus.folder} is corpus {corpus.fingerprint}: open the corpus the run trained on"
        )
    if index.n_samples != corpus.n_samples:
        raise ZooError(f"the data index expects {index.n_samples} samples, the corpus has {corpus.n_samples}")


def batch_tokens(corpus: Corpus, index: StepIndex, step: int) -> np.ndarray:
    """The token array of step `step` exactly as trained: int64 [batch_size, seq_len]."""
    check_pairing(corpus, index)
    return corpus.samples(index.batch_ids(step))


def batch_text(corpus: Corpus, index: StepIndex, step: int) -> list[str]:
    """Each sample of the step's batch decoded to text (EOS shown as <|endoftext|>)."""
    return [corpus.decode(row) for row in batch_tokens(corpus, index, step)]


def documents_at(corpus: Corpus, index: StepIndex, step: int) -> list[str]:
    """Ids of every document with a token in the step's batch, in order of first appearance."""
    check_pairing(corpus, index)
    seen: dict[str, None] = {}
    for sample in index.batch_ids(step).tolist():
        for doc in corpus.documents_of(sample):
            seen.setdefault(doc, None)
    return list(seen)
