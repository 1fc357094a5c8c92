"""Tokenize documents and pack them into fixed-length samples, written straight to tokens.bin.

The packing rule (version "eos-after-each-document/drop-tail"):
- The token stream is  doc_0, EOS, doc_1, EOS, ..., doc_{n-1}, EOS  in source order: every document
  is followed by one EOS token (so EOS separates documents and also ends the last one). Documents are
  encoded independently (no special tokens added by the tokenizer), so a document's tokens never
  depend on its neighbours, on chunking, or on the number of worker processes.
- The stream is cut into consecutive samples of exactly `seq_len` tokens: sample k is stream
  positions k*seq_len .. (k+1)*seq_len-1. Documents cross sample boundaries freely: no padding,
  no attention-mask reset; a sample may hold the end of one document, EOS, and the start of the next.
- The last partial sample (the final len(stream) % seq_len tokens) is DROPPED; corpus.json records
  how many tokens that was (`dropped_tail_tokens`).
- Provenance of sample k: the document holding stream position k*seq_len and the offset of that
  position within the document's tokens (offset == the document's length means the sample starts
  on that document's EOS).

`workers` > 1 encodes chunks of documents in spawned processes; chunks come back in order, and the
result is byte-identical to workers=1.
"""
from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from zoo_common.errors import ZooError

PACKING_RULE = "eos-after-each-document/drop-tail"
CHUNK_DOCUMENTS = 512


@dataclass(frozen=True)
class PackedStream:
    """What packing produced: document table (ids, stream starts, lengths) and sample counts."""

    doc_ids: list[str]
    doc_starts: np.ndarray  # int64, stream position of each document's first token
    doc_lengths: np.ndarray  # int64, tokens of each document, EOS not counted
    n_stream_tokens: int
    n_samples: int
    dropped_tail_tokens: int


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


def encode_chunk(tokenizer: Tokenizer, texts: list[str], eos_id: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Texts -> (flat token array with an EOS after each text, per-text token counts without EOS)."""
    encodings = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
    lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
    eos = (eos_id,)
    flat = np.fromiter(chain.from_iterable(chain(e.ids, eos) for e in encodings), dtype=dtype,
                       count=int(lengths.sum()) + len(encodings))
    return flat, lengths


_worker_tokenizer: Tokenizer | None = None


def _init_worker(tokenizer_json: str) -> None:
    global _worker_tokenizer
    _worker_tokenizer = Tokenizer.from_str(tokenizer_json)


def _encode_in_worker(job: tuple[list[str], int, str]) -> tuple[np.ndarray, np.ndarray]:
    texts, eos_id, dtype = job
    return encode_chunk(_worker_tokenizer, texts, eos_id, np.dtype(dtype))


def pack_documents(
    documents: Iterable[tuple[str, str]],
    tokenizer_json: str,
    *,
    eos_id: int,
    seq_len: int,
    dtype: np.dtype,
    out_file: Path,
    workers: int = 1,
    on_documents: Callable[[int], None] | None = None,
) -> PackedStream:
    """Encode, append to `out_file`, then cut it to whole samples (the tail is dropped)."""
    doc_ids: list[str] = []
    lengths: list[np.ndarray] = []

    def text_chunks() -> Iterator[list[str]]:
        iterator = iter(documents)
        while chunk := list(islice(iterator, CHUNK_DOCUMENTS)):
            doc_ids.extend(doc_id for doc_id, _ in chunk)
            yield [text for _, text in chunk]

    total = 0
    with open(out_file, "wb") as sink:
        for flat, chunk_lengths in _encoded_chunks(text_chunks(), tokenizer_json, eos_id, dtype, workers):
            sink.write(flat.tobytes())
            lengths.append(chunk_lengths)
            total += len(flat)
            if on_documents:
                on_documents(len(chunk_lengths))
    doc_lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
    if len(doc_lengths) == 0:
        raise ZooError("the source has no documents (every text was empty)")
    n_samples = total // seq_len
    if n_samples == 0:
        raise ZooError(f"the corpus has only {total} tokens, fewer than one sample of seq_len {seq_len}")
    with open(out_file, "r+b") as sink:
        sink.truncate(n_samples * seq_len * dtype.itemsize)
    starts = np.zeros(len(doc_lengths), dtype=np.int64)
    np.cumsum(doc_lengths[:-1] + 1, out=starts[1:])
    return PackedStream(doc_ids, starts, doc_lengths, total, n_samples, total - n_samples * seq_len)


def _encoded_chunks(chunks: Iterator[list[str]], tokenizer_json: str, eos_id: int, dtype: np.dtype,
                    workers: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    if workers <= 1:
        tokenizer = Tokenizer.from_str(tokenizer_json)
        for texts in chunks:
            yield encode_chunk(tokenizer, texts, eos_id, dtype)
        return
    context = multiprocessing.get_context("spawn")  # no fork after tokenizers' threads started
    with context.Pool(workers, initializer=_init_worker, initargs=(tokenizer_json,)) as pool:
        yield from pool.imap(_encode_in_worker, ((texts, eos_id, dtype.str) for texts in chunks))


def sample_provenance(stream: PackedStream, sample_ids: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(document index, token offset) of the first token of each sample."""
    positions = np.asarray(sample_ids, dtype=np.int64) * seq_len
    docs = np.searchsorted(stream.doc_starts, positions, side="right") - 1
    return docs, positions - stream.doc_starts[docs]
