"""data_index: corpora, tokenizers, packed samples, the data order and the per-step index (no torch).

    corpus = prepare_corpus("builtin:pydoc", "corpora/pydoc", vocab_size=2048, seq_len=128)
    ids = global_batch(step, data_seed=1, batch_size=32, n_samples=corpus.n_samples)
    tokens = corpus.samples(rank_slice(ids, rank, world_size))
"""
from data_index.builtin_sources import BUILTIN_SOURCES
from data_index.corpus import Corpus, prepare_corpus
from zoo_common.errors import IntegrityError, ZooError
from data_index.order import global_batch, permutation, rank_slice
from data_index.part_log import PartLog
from data_index.queries import batch_text, batch_tokens, documents_at
from data_index.step_index import StepIndex, StepIndexWriter

__all__ = [
    "BUILTIN_SOURCES", "Corpus", "IntegrityError", "PartLog", "StepIndex", "StepIndexWriter", "ZooError",
    "batch_text", "batch_tokens", "documents_at", "global_batch", "permutation", "prepare_corpus", "rank_slice",
]
