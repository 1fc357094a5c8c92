"""Corpora beside runs: a run names its corpus by fingerprint, and the store keeps that corpus at
`corpora/<fingerprint>/`, so a replay on another machine reads the very same tokens.

Prepared corpora are memory-mapped, so reading needs a local folder: a local store is read in
place; a remote store's corpus is fetched once into the cache and verified there.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import shutil
import sys
import uuid
from pathlib import Path

from data_index import Corpus, prepare_corpus
from zoo_common.errors import IntegrityError, NotFoundError
from zoo.cache import cache_dir

_LAST_FILE = "corpus.json"  # written last on publish: its presence means the copy is complete
_PREPARED_FROM = "prepared_from.json"  # a prepared corpus's recipe, beside it in the cache
_DATA_INDEX_VERSION = 1  # raise when data_index prepares the same recipe into other tokens


def ensure_corpus(store, data_cfg, *, progress: bool = True) -> Corpus:
    """Prepare the corpus a family's `data` section describes and publish it into `store`.

    The prepared corpus is cached under a key made of the data section and the state of its
    source (Python version for built-ins, size and mtime of local files), so a second `zoo train`
    opens it in milliseconds instead of re-tokenizing; any change to the source prepares anew.
    The folder records that recipe (prepared_from.json) and is used only while it matches.
    """
    recipe = json.dumps({"data": dataclasses.asdict(data_cfg), "source": _source_state(data_cfg),
                         "data_index": _DATA_INDEX_VERSION}, sort_keys=True)
    folder = cache_dir("prepared") / hashlib.sha256(recipe.encode()).hexdigest()[:24]
    recorded = _read_bytes(folder / _PREPARED_FROM)
    if recorded is not None and recorded != recipe.encode():  # not what this recipe prepares
        shutil.rmtree(folder, ignore_errors=True)
    if (folder / _LAST_FILE).exists():
        corpus = Corpus.open(folder)
    else:
        corpus = prepare_corpus(
            data_cfg.source_spec,
            folder,
            tokenizer=data_cfg.tokenizer,
            vocab_size=data_cfg.vocab_size,
            seq_len=data_cfg.seq_len,
            progress=progress,
        )
    if recorded is None:  # the folder is named by the recipe's digest: this recipe made it
        _write_atomically(folder / _PREPARED_FROM, recipe.encode())
    publish_corpus(store, corpus)
    return corpus


def _write_atomically(path: Path, data: bytes) -> None:
    staging = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    staging.write_bytes(data)
    os.replace(staging, path)


def _source_state(data_cfg) -> list:
    """What a prepared corpus depends on besides the data section."""
    sources = [part.source for part in data_cfg.sources] if data_cfg.sources else [data_cfg.source]
    state = []
    for source in sources:
        state += _one_source_state(source)
    if data_cfg.tokenizer:
        state += _files_state([Path(data_cfg.tokenizer)])
    return state


def _one_source_state(source: str) -> list:
    if source.startswith("builtin:"):
        return [platform.python_version(), sys.prefix]
    return _files_state([Path(source.split("#", 1)[0])])


def _files_state(paths: list[Path]) -> list:
    state = []
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        state += [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files if f.exists()]
    return state


def publish_corpus(store, corpus: Corpus) -> None:
    """Copy a prepared corpus into the store unless it is already there."""
    target = store.corpus_location(corpus.fingerprint)
    if target.exists(_LAST_FILE):
        return
    for name in corpus.files():
        if name != _LAST_FILE:
            target.write_atomic(name, (corpus.folder / name).read_bytes())
    target.write_atomic(_LAST_FILE, (corpus.folder / _LAST_FILE).read_bytes())


def _fetch(source, folder: Path, listing: bytes) -> None:
    """Copy a published corpus file by file, as its corpus.json lists them: works the same on
    every filesystem (an HTTP store cannot tell a folder from a file; corpus.json can)."""
    for name in sorted(json.loads(listing)["files"]):
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes(name))
    (folder / _LAST_FILE).write_bytes(listing)  # last: the copy is complete


def open_corpus(store, fingerprint: str) -> Corpus:
    """The corpus a run recorded, read from the store (fetched into the cache if remote)."""
    source = store.corpus_location(fingerprint)
    if source.is_local:
        if not source.exists(_LAST_FILE):
            raise _missing(store, fingerprint)
        corpus = Corpus.open(source.local_path())
    else:
        corpus = _fetched(store, fingerprint)
    if corpus.fingerprint != fingerprint:
        raise IntegrityError(
            f"corpus at corpora/{fingerprint}/ in {store.url} has fingerprint "
            f"{corpus.fingerprint}; the run expects {fingerprint}"
        )
    return corpus


def _missing(store, fingerprint: str) -> NotFoundError:
    return NotFoundError(f"corpus {fingerprint[:16]}… is missing from store {store.url} (expected "
                         f"at corpora/{fingerprint}/); push the run together with its corpus")


def _fetched(store, fingerprint: str) -> Corpus:
    """A remote store's corpus, from the cache when the cached copy was fetched from exactly what
    the store's corpus.json lists now (every file's sha256), else fetched anew and verified."""
    source = store.corpus_location(fingerprint)
    listing = source.read_if_exists(_LAST_FILE)
    if listing is None:
        raise _missing(store, fingerprint)
    local = cache_dir("corpora") / fingerprint
    if _read_bytes(local / _LAST_FILE) == listing:
        return Corpus.open(local)
    staging = local.with_name(f"{local.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        _fetch(source, staging, listing)
        Corpus.open(staging).verify()  # every file against the sha256 corpus.json records
        if local.exists():  # a copy of something else: set aside, then replaced whole
            aside = local.with_name(f"{local.name}.stale-{uuid.uuid4().hex[:8]}")
            local.rename(aside)
            shutil.rmtree(aside, ignore_errors=True)
        staging.rename(local)
    except OSError:
        if _read_bytes(local / _LAST_FILE) != listing:  # not a race lost to another fetcher
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Corpus.open(local)


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def tokenizer_files(store, fingerprint: str) -> dict[str, bytes]:
    """The tokenizer files of a run's corpus (what a snapshot folder carries): read from a local
    store, or from the cache's verified copy of a remote one, else from the store."""
    source = store.corpus_location(fingerprint)
    local = cache_dir("corpora") / fingerprint
    if not source.is_local and (local / _LAST_FILE).exists():
        folder = local / "tokenizer"  # none for drawn features
        return {path.name: path.read_bytes() for path in sorted(folder.glob("*")) if path.is_file()}
    tokenizer = source.child("tokenizer")
    return {name: tokenizer.read_bytes(name) for name in tokenizer.list()}
