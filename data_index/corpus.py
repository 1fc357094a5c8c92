"""A prepared corpus: packed token samples, tokenizer, provenance and a fingerprint, in one folder.

Folder layout (owned here):
  corpus.json         metadata, packing parameters, sizes + sha256 of every file, the fingerprint
  tokens.bin          little-endian uint16 (vocab <= 65536) or uint32, n_samples * seq_len, memory-mapped
  provenance.parquet  one row per sample: sample, document_id, token_offset (of the sample's first token)
  documents.parquet   one row per document: document_id, start (stream position), n_tokens (EOS excluded)
  tokenizer/          tokenizer.json + tokenizer_config.json (AutoTokenizer.from_pretrained loads it)
  loss_mask.bin       tasks only (data_index/tasks.py): uint8 n_samples * seq_len, 1 = a loss target

A task corpus also records its split (train fraction + rule, data_index/splits.py) in its packing
parameters: the train/test split of a run is then a function of the corpus and the run's data seed.

The fingerprint is sha256 over the packing parameters, sha256(tokenizer.json), sha256(tokens.bin)
and, for a task, sha256(loss_mask.bin): everything that decides what a model sees and learns from. Runs record it; a replay elsewhere checks it. Preparing is
done in a temporary sibling folder renamed into place at the end, so an error leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Tokenizer

from data_index import features
from data_index import tokenizer as tok
from zoo_common.progress import progress as progress_bar
from zoo_common.errors import IntegrityError, ZooError
from zoo_common.location import sha256_file
from data_index.packing import (
    PACKING_RULE,
    PackedStream,
    pack_documents,
    sample_provenance,
    token_dtype,
)
from data_index.builtin_sources import TokenizerBoundSource
from data_index.sources import resolve_source
from data_index.splits import SPLIT_RULE, held_out_split, train_split
from data_index.tasks import TaskSamples

TASK_RULE = "task/one-sample-per-document"

FORMAT = "zoo-corpus"
VERSION = 1


class Corpus:
    """A prepared corpus folder opened for reading; tokens stay on disk (memory-mapped)."""

    def __init__(self, folder: Path, meta: dict):
        self.folder = folder
        self.meta = meta
        self.fingerprint: str = meta["fingerprint"]
        self.seq_len: int = meta["seq_len"]
        self.n_samples: int = meta["n_samples"]
        self.vocab_size: int = meta["vocab_size"]
        self.eos_id: int = meta["eos_id"]
        self.dtype = np.dtype(meta["dtype"])
        self.tokenizer_dir = folder / "tokenizer"
        self._tokens = np.memmap(folder / "tokens.bin", dtype=self.dtype, mode="r", shape=(self.n_samples, self.seq_len))
        self._tokenizer: Tokenizer | None = None
        self._documents: pa.Table | None = None
        self._seen_tokens: np.ndarray | None = None
        split = meta["packing"].get("split")
        # the fraction of samples a run trains on (the rest is its test split); None: all of them
        self.train_fraction: float | None = split["train_fraction"] if split else None
        self._loss_mask = (np.memmap(folder / "loss_mask.bin", dtype=np.uint8, mode="r",
                                     shape=(self.n_samples, self.seq_len))
                           if "loss_mask.bin" in meta["files"] else None)

    @classmethod
    def open(cls, folder: str | Path) -> Corpus | features.FeatureCorpus:
        """Open a local corpus folder, checking corpus.json and every file's size (fast, no hashing);
        a drawn-features folder opens as the FeatureCorpus it describes."""
        folder = Path(folder).expanduser().resolve()
        meta_path = folder / "corpus.json"
        if not meta_path.is_file():
            raise ZooError(f"{folder} is not a prepared corpus (no corpus.json); make one with `zoo data prepare`")
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError as exc:
            raise IntegrityError(f"{meta_path} is not valid JSON: {exc}") from None
        if meta.get("format") != FORMAT:
            raise IntegrityError(f"{meta_path} is not a corpus description (format {meta.get('format')!r})")
        if meta.get("kind") == features.KIND:  # no tokens: drawn afresh from its recipe
            return features.FeatureCorpus.open(folder, meta)
        for relpath, info in meta["files"].items():
            path = folder / relpath
            size = path.stat().st_size if path.is_file() else None
            if size != info["bytes"]:
                raise IntegrityError(f"corpus file {path} has {size} bytes, corpus.json records {info['bytes']}")
        return cls(folder, meta)

    def __repr__(self) -> str:
        return f"Corpus({str(self.folder)!r}, fingerprint={self.fingerprint[:12]}, samples={self.n_samples}x{self.seq_len})"

    def samples(self, ids) -> np.ndarray:
        """Token arrays of the given sample ids, int64 [len(ids), seq_len], read from the memmap."""
        ids = self._checked_ids(ids)
        return self._tokens[ids].astype(np.int64)

    def _checked_ids(self, ids) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) and (ids.min() < 0 or ids.max() >= self.n_samples):
            bad = int(ids[(ids < 0) | (ids >= self.n_samples)][0])
            raise ZooError(f"sample {bad} is outside the corpus: valid ids 0..{self.n_samples - 1}")
        return ids

    def loss_mask(self, ids) -> np.ndarray | None:
        """Bool [len(ids), seq_len], True where a token is a loss target; None: every token is."""
        if self._loss_mask is None:
            return None
        return self._loss_mask[self._checked_ids(ids)].astype(bool)

    def train_ids(self, data_seed: int) -> np.ndarray:
        """The samples a run with `data_seed` trains on, ascending: its train split, or all."""
        if self.train_fraction is None:
            return np.arange(self.n_samples, dtype=np.int64)
        return train_split(self.n_samples, self.train_fraction, data_seed)

    def test_ids(self, data_seed: int) -> np.ndarray:
        """The samples a run with `data_seed` never trains on (empty when the corpus has no split)."""
        if self.train_fraction is None:
            return np.zeros(0, dtype=np.int64)
        return held_out_split(self.n_samples, self.train_fraction, data_seed)

    def seen_tokens(self) -> np.ndarray:
        """Token ids that occur in the corpus (EOS excluded), ascending. An id that never occurs
        has an embedding no gradient ever reached, so probes of what a model learned (the
        induction tests) draw their random tokens from these."""
        if self._seen_tokens is None:  # one pass over the tokens, then kept: a sweep asks per checkpoint
            counts = np.bincount(np.asarray(self._tokens).reshape(-1), minlength=self.vocab_size)
            counts[self.eos_id] = 0
            self._seen_tokens = np.flatnonzero(counts).astype(np.int64)
        return self._seen_tokens

    def decode(self, tokens) -> str:
        if self._tokenizer is None:
            self._tokenizer = Tokenizer.from_file(str(self.tokenizer_dir / "tokenizer.json"))
        return self._tokenizer.decode([int(t) for t in np.asarray(tokens).reshape(-1)], skip_special_tokens=False)

    def _document_table(self) -> tuple[pa.Array, np.ndarray]:
        if self._documents is None:
            self._documents = pq.read_table(self.folder / "documents.parquet")
        table = self._documents
        return table.column("document_id").combine_chunks(), table.column("start").to_numpy()

    def _check_sample(self, sample_id: int) -> None:
        if not 0 <= sample_id < self.n_samples:
            raise ZooError(f"sample {sample_id} is outside the corpus: valid ids 0..{self.n_samples - 1}")

    def provenance(self, sample_id: int) -> tuple[str, int]:
        """(document id, token offset within that document) of the sample's first token."""
        self._check_sample(sample_id)
        ids, starts = self._document_table()
        position = sample_id * self.seq_len
        doc = int(np.searchsorted(starts, position, side="right")) - 1
        return ids[doc].as_py(), int(position - starts[doc])

    def documents_of(self, sample_id: int) -> list[str]:
        """Ids of every document with a token (or its EOS) inside the sample, in stream order."""
        self._check_sample(sample_id)
        ids, starts = self._document_table()
        first, last = sample_id * self.seq_len, (sample_id + 1) * self.seq_len - 1
        lo, hi = np.searchsorted(starts, [first, last], side="right") - 1
        return ids[int(lo) : int(hi) + 1].to_pylist()

    def samples_of_documents(self, document_ids) -> np.ndarray:
        """Ascending ids of every sample holding a token (or the EOS) of any of these documents;
        an id the corpus does not have is an error that names it."""
        ids, starts = self._document_table()
        position = {doc: k for k, doc in enumerate(ids.to_pylist())}
        wanted = [str(d) for d in document_ids]
        unknown = [d for d in wanted if d not in position]
        if unknown:
            raise ZooError(f"{len(unknown)} document id(s) are not in the corpus, e.g. "
                           f"{', '.join(map(repr, unknown[:3]))}; its ids look like "
                           f"{', '.join(map(repr, ids[:3].to_pylist()))}")
        ends = np.append(starts[1:], self.n_samples * self.seq_len)  # beyond the last sample: cut
        found = []
        for k in sorted({position[d] for d in wanted}):
            first, last = starts[k] // self.seq_len, (min(ends[k], self.n_samples * self.seq_len) - 1) // self.seq_len
            if first < self.n_samples:
                found.append(np.arange(first, last + 1, dtype=np.int64))
        return np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)

    def files(self) -> list[str]:
        """Relative paths of every file of the corpus (what a store copies beside its runs)."""
        return sorted(["corpus.json", *self.meta["files"]])

    def verify(self) -> None:
        """Re-hash every file and recompute the fingerprint; IntegrityError naming what differs."""
        for relpath, info in self.meta["files"].items():
            digest = sha256_file(self.folder / relpath)
            if digest != info["sha256"]:
                raise IntegrityError(f"corpus file {self.folder / relpath} has sha256 {digest}, corpus.json records {info['sha256']}")
        recomputed = _fingerprint(self.meta["packing"], self.meta["files"])
        if recomputed != self.fingerprint:
            raise IntegrityError(f"corpus {self.folder} fingerprint recomputes to {recomputed}, recorded {self.fingerprint}")


def prepare_corpus(
    source: str,
    out: str | Path,
    *,
    tokenizer: str | Path | None = None,
    vocab_size: int = 2048,
    seq_len: int = 128,
    workers: int = 1,
    progress: bool = True,
) -> Corpus:
    """Read SOURCE, tokenize, pack into `out`; returns the corpus already there if it is the same one."""
    if features.is_feature_source(source):  # synthetic features: only a recipe to write
        return features.prepare_features(source, out)
    if seq_len <= 0:
        raise ZooError(f"seq_len must be > 0, got {seq_len}")
    if workers < 1:
        raise ZooError(f"workers must be >= 1, got {workers}")
    if tokenizer is None:
        tok.check_vocab_size(vocab_size)
    out = Path(out).expanduser().resolve()
    existing = _existing_corpus(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir(parents=True)
        meta = _build(source, tmp, tokenizer=tokenizer, vocab_size=vocab_size, seq_len=seq_len,
                      workers=workers, progress=progress)
        if existing is not None:
            return _same_or_error(existing, meta, out)
        if out.is_dir():
            out.rmdir()  # empty (checked by _existing_corpus)
        try:
            os.rename(tmp, out)
        except OSError:
            raced = _existing_corpus(out)  # another process finished the same folder first
            if raced is None:
                raise
            return _same_or_error(raced, meta, out)
        return Corpus.open(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _existing_corpus(out: Path) -> Corpus | None:
    if out.exists() and not out.is_dir():
        raise ZooError(f"output {out} is a file; give a folder for the prepared corpus")
    if (out / "corpus.json").exists():
        return Corpus.open(out)
    if out.is_dir() and any(out.iterdir()):
        raise ZooError(f"output folder {out} is not empty and holds no corpus; choose a new or empty folder")
    return None


def _same_or_error(existing: Corpus, meta: dict, out: Path) -> Corpus:
    if existing.fingerprint != meta["fingerprint"]:
        raise ZooError(
            f"{out} already holds a different corpus (fingerprint {existing.fingerprint}, source "
            f"{existing.meta.get('source')!r}); this one is {meta['fingerprint']} from {meta['source']!r}: "
            f"choose another --out folder"
        )
    return existing


def _build(source: str, folder: Path, *, tokenizer, vocab_size: int, seq_len: int, workers: int, progress: bool) -> dict:
    docs = resolve_source(source, cache_dir=folder / ".datasets-cache", quiet=not progress)
    if isinstance(docs, TaskSamples):
        return _build_task(docs, folder, tokenizer=tokenizer, seq_len=seq_len)
    bound = isinstance(docs, TokenizerBoundSource)
    if tokenizer is None:
        trains = docs.unbound if bound else docs
        if trains is None:
            raise ZooError(f"{docs.spec} draws its tokens from the corpus tokenizer, and nothing here trains "
                           f"one: mix it with a text source (a manifest's data.sources) or give a tokenizer "
                           f"(data.tokenizer; --tokenizer for zoo data prepare)")
        texts = (text for _, text in _progress(trains.documents(), progress, "read + train tokenizer"))
        trained = tok.train_bpe(texts, vocab_size=vocab_size)
        tokenizer_json, eos_token = trained.to_str().encode("utf-8"), tok.EOS_TOKEN
        tokenizer_info = {"trained": True, "vocab_size_requested": vocab_size}
    else:
        _, tokenizer_json, eos_token = tok.load_existing(tokenizer)
        tokenizer_info = {"trained": False, "from": str(tokenizer)}
    loaded = Tokenizer.from_str(tokenizer_json.decode("utf-8"))
    actual_vocab, eos_id = loaded.get_vocab_size(), loaded.token_to_id(eos_token)
    if bound:
        docs = docs.bind(loaded)
    tok.save_folder(folder / "tokenizer", tokenizer_json=tokenizer_json, eos_token=eos_token, model_max_length=seq_len)
    dtype = token_dtype(actual_vocab)
    bar = _bar(progress, "tokenize + pack")
    try:
        stream = pack_documents(docs.documents(), tokenizer_json.decode("utf-8"), eos_id=eos_id, seq_len=seq_len,
                                dtype=dtype, out_file=folder / "tokens.bin", workers=workers,
                                on_documents=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    shutil.rmtree(folder / ".datasets-cache", ignore_errors=True)
    _write_tables(folder, stream, seq_len)
    packing = {"rule": PACKING_RULE, "seq_len": seq_len, "dtype": dtype.name, "eos_id": eos_id,
               "n_samples": stream.n_samples}
    files = {rel: {"bytes": (folder / rel).stat().st_size, "sha256": sha256_file(folder / rel)}
             for rel in sorted(_relative_files(folder))}
    meta = {
        "format": FORMAT, "version": VERSION, "fingerprint": _fingerprint(packing, files),
        "source": docs.spec, "source_metadata": docs.metadata,
        "seq_len": seq_len, "n_samples": stream.n_samples, "vocab_size": actual_vocab, "eos_id": eos_id,
        "eos_token": eos_token, "dtype": dtype.name, "n_documents": len(stream.doc_ids),
        "n_stream_tokens": stream.n_stream_tokens, "dropped_tail_tokens": stream.dropped_tail_tokens,
        "packing": packing, "tokenizer": tokenizer_info,
        "created_with": {"python": sys.version.split()[0], "tokenizers": _version("tokenizers")},
        "files": files,
    }
    (folder / "corpus.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def _build_task(task: TaskSamples, folder: Path, *, tokenizer, seq_len: int) -> dict:
    """A task's samples as they are: one per document, its own vocabulary, its mask and split."""
    n_samples, task_len = task.tokens.shape
    name = task.spec.partition("?")[0]
    if tokenizer is not None:
        raise ZooError(f"{name} has its own symbolic vocabulary (one token per symbol); "
                       f"remove the tokenizer from the data config")
    if seq_len != task_len:
        raise ZooError(f"{name} samples are {task_len} tokens ({task.metadata.get('layout', 'fixed')}): "
                       f"set data.seq_len to {task_len}, not {seq_len}")
    tokenizer_json, eos_id = _word_level_tokenizer(task.vocabulary, task.eos_token)
    tok.save_folder(folder / "tokenizer", tokenizer_json=tokenizer_json, eos_token=task.eos_token,
                    model_max_length=seq_len)
    dtype = token_dtype(len(task.vocabulary))
    (folder / "tokens.bin").write_bytes(np.ascontiguousarray(task.tokens, dtype=dtype).tobytes())
    (folder / "loss_mask.bin").write_bytes(np.ascontiguousarray(task.loss_mask, dtype=np.uint8).tobytes())
    starts = np.arange(n_samples, dtype=np.int64) * seq_len
    stream = PackedStream(task.document_ids, starts, np.full(n_samples, seq_len, dtype=np.int64),
                          n_samples * seq_len, n_samples, 0)
    _write_tables(folder, stream, seq_len)
    packing = {"rule": TASK_RULE, "seq_len": seq_len, "dtype": dtype.name, "eos_id": eos_id,
               "n_samples": n_samples,
               "split": {"train_fraction": task.train_fraction, "rule": SPLIT_RULE}}
    files = {rel: {"bytes": (folder / rel).stat().st_size, "sha256": sha256_file(folder / rel)}
             for rel in sorted(_relative_files(folder))}
    meta = {
        "format": FORMAT, "version": VERSION, "fingerprint": _fingerprint(packing, files),
        "source": task.spec, "source_metadata": task.metadata,
        "seq_len": seq_len, "n_samples": n_samples, "vocab_size": len(task.vocabulary), "eos_id": eos_id,
        "eos_token": task.eos_token, "dtype": dtype.name, "n_documents": n_samples,
        "n_stream_tokens": n_samples * seq_len, "dropped_tail_tokens": 0,
        "packing": packing, "tokenizer": {"trained": False, "symbolic": True},
        "created_with": {"python": sys.version.split()[0], "tokenizers": _version("tokenizers")},
        "files": files,
    }
    (folder / "corpus.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def _word_level_tokenizer(vocabulary: list[str], eos_token: str) -> tuple[bytes, int]:
    """One token per symbol, split on whitespace: "12 7 =" -> [12, 7, =]."""
    from tokenizers import models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({word: i for i, word in enumerate(vocabulary)}, unk_token=eos_token))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens([eos_token])
    return tokenizer.to_str().encode("utf-8"), vocabulary.index(eos_token)


def _write_tables(folder: Path, stream: PackedStream, seq_len: int) -> None:
    ids = pa.array(stream.doc_ids, pa.string())
    documents = pa.table({"document_id": ids, "start": stream.doc_starts, "n_tokens": stream.doc_lengths})
    pq.write_table(documents, folder / "documents.parquet", compression="zstd")
    sample_ids = np.arange(stream.n_samples, dtype=np.int64)
    docs, offsets = sample_provenance(stream, sample_ids, seq_len)
    provenance = pa.table({"sample": sample_ids, "document_id": ids.take(pa.array(docs)).dictionary_encode(),
                           "token_offset": offsets})
    pq.write_table(provenance, folder / "provenance.parquet", compression="zstd")


def _relative_files(folder: Path) -> list[str]:
    return [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != "corpus.json"]


def _fingerprint(packing: dict, files: dict) -> str:
    digest = hashlib.sha256(b"zoo-corpus/1\n")
    digest.update(json.dumps(packing, sort_keys=True).encode() + b"\n")
    digest.update(files["tokenizer/tokenizer.json"]["sha256"].encode() + b"\n")
    digest.update(files["tokens.bin"]["sha256"].encode())
    if "loss_mask.bin" in files:  # tasks only: older corpora keep their fingerprints
        digest.update(b"\n" + files["loss_mask.bin"]["sha256"].encode())
    return digest.hexdigest()


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _progress(iterable, enabled: bool, desc: str):
    bar = _bar(enabled, desc)
    if bar is None:
        yield from iterable
        return
    try:
        for item in iterable:
            bar.update(1)
            yield item
    finally:
        bar.close()


def _bar(enabled: bool, desc: str):
    return progress_bar(desc=desc, unit="doc") if enabled else None
