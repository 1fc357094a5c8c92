"""The held-out evaluation set: samples of the training's kind of text that no run ever trained on.

Why a separate set: the training order walks *every* sample of the prepared corpus (epoch after
epoch), so no part of the training corpus is honestly "held out". Until the data section of a
manifest can reserve a held-out slice (see the note at the end), the held-out set is made from
documents of the same source that the training corpus does NOT contain, tokenized with the run's
own tokenizer and packed by the same rule (each document followed by EOS, cut into seq_len samples):

- `builtin:pydoc?max_docs=N` (N > 0): the stdlib docstrings after the first N (same min_chars) —
  the same distribution, disjoint by construction.
- `builtin:pydoc` with every docstring (max_docs=0, e.g. the `tiny` family): no unseen docstring of
  >= min_chars exists, so the set is the docstrings of min_chars/2 .. min_chars-1 characters, which
  training filtered out. Honest but shorter text: its loss is comparable across steps, seeds and
  families, not to the training loss.
- `builtin:induction?...&seed=S`: the same generator with another seed (fresh random sequences).
- builtin:modular: a task; its test split is each run's own, measured by the accuracy metric.
- anything else (files, hub datasets): give the
  held-out documents yourself, `heldout="SOURCE"` (any source string `zoo data prepare` takes).

Whatever the rule, every held-out document's token sequence is checked against every document of
the training corpus: a derived rule skips a document that also occurs in training (a docstring
repeated in two places), a given source with such a document is an error naming it.

Cleaner, later: a `holdout` fraction in the manifest's data section, with data_index's order
drawing only from samples [0, n_train) and the eval from [n_train, n_samples), documents not split.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from urllib.parse import parse_qsl

import numpy as np
from tokenizers import Tokenizer

from data_index import Corpus
from data_index.builtin_sources import DocumentSource, resolve_builtin
from zoo_common.errors import ZooError
from data_index.sources import resolve_source
from zoo.cache import cache_dir

RULE_VERSION = "heldout/1"
DEFAULT_SAMPLES = 64
_INDUCTION_SEED_OFFSET = 1_000_003


@dataclass(frozen=True, eq=False)
class HeldOut:
    """Held-out samples [n, seq_len] (int64) with where they came from and a content fingerprint."""

    tokens: np.ndarray
    source: str  # the source string the documents were read from
    rule: str  # in words: how they were chosen
    document_ids: tuple[str, ...]
    fingerprint: str  # sha256 of the token bytes, first 16 hex digits


def heldout_documents(
    training_source: str, *, heldout: str | None = None
) -> tuple[str, str, Iterator]:
    """(source string, rule in words, iterator of (document id, text)) of the held-out documents."""
    if heldout is not None:
        docs = resolve_source(heldout, quiet=True)
        if not isinstance(docs, DocumentSource):
            raise ZooError(f"held-out source {heldout!r} is not plain text (a task, or drawn from a tokenizer); "
                           "give text documents: a .txt/.jsonl/.parquet file or folder, hf:NAME, builtin:pydoc")
        return docs.spec, "documents of the given held-out source", docs.documents()
    name, _, query = training_source.removeprefix("builtin:").partition("?")
    if training_source.startswith("builtin:modular"):
        raise ZooError(
            f"{training_source!r} is a task with its own test split (each run's held-out pairs): "
            "measure it with the accuracy metric (`zoo eval FAMILY --metric accuracy`), which "
            "reports train_/test_ accuracy and loss; heldout='SOURCE' takes text documents only")
    params = (
        {k: int(v) for k, v in parse_qsl(query)} if training_source.startswith("builtin:") else {}
    )
    if training_source.startswith("builtin:pydoc"):
        min_chars = params.get("min_chars", 200)
        max_docs = params.get("max_docs", 0)
        if max_docs > 0:
            spec = f"pydoc?max_docs=0&min_chars={min_chars}"
            docs = islice(resolve_builtin(spec).documents(), max_docs, None)
            return f"builtin:{spec}", f"stdlib docstrings after the first {max_docs}", docs
        spec = f"pydoc?max_docs=0&min_chars={min_chars // 2}"
        docs = (d for d in resolve_builtin(spec).documents() if len(d[1]) < min_chars)
        rule = f"stdlib docstrings of {min_chars // 2}..{min_chars - 1} chars (training kept >= {min_chars})"
        return f"builtin:{spec}", rule, docs
    if name == "induction" and training_source.startswith("builtin:"):
        params["seed"] = params.get("seed", 0) + _INDUCTION_SEED_OFFSET
        spec = "induction?" + "&".join(f"{k}={v}" for k, v in sorted(params.items()))
        return (
            f"builtin:{spec}",
            "the induction generator with another seed",
            resolve_builtin(spec).documents(),
        )
    raise ZooError(
        f"no held-out split can be derived for training source {training_source!r}: the training "
        "order uses every sample of its corpus, so loss on it would not be held out. Give documents "
        "the runs never saw: heldout='SOURCE' (Python) or --heldout SOURCE (CLI), any source "
        "`zoo data prepare` takes (a .txt/.jsonl/.parquet file or folder, hf:NAME, builtin:NAME)"
    )


def _document_hashes(corpus: Corpus) -> set[bytes]:
    """sha256 of every training document's tokens (those the packing kept whole)."""
    import pyarrow.parquet as pq

    table = pq.read_table(corpus.folder / "documents.parquet")
    starts, lengths = table.column("start").to_numpy(), table.column("n_tokens").to_numpy()
    stream = np.memmap(corpus.folder / "tokens.bin", dtype=corpus.dtype, mode="r")
    whole = starts + lengths <= len(stream)
    return {
        hashlib.sha256(np.asarray(stream[s : s + n], dtype=np.int64).tobytes()).digest()
        for s, n in zip(starts[whole], lengths[whole])
    }


def build_heldout(
    corpus: Corpus, *, n_samples: int = DEFAULT_SAMPLES, heldout: str | None = None
) -> HeldOut:
    """Tokenize and pack held-out documents until n_samples samples of corpus.seq_len are full."""
    if int(n_samples) != n_samples or n_samples < 1:
        raise ZooError(f"held-out n_samples must be a positive integer, got {n_samples!r}")
    source, rule, documents = heldout_documents(corpus.meta["source"], heldout=heldout)
    key = hashlib.sha256(
        json.dumps([RULE_VERSION, corpus.fingerprint, source, rule, n_samples]).encode()
    ).hexdigest()[:24]
    cached = _read_cache(key, corpus.seq_len)
    if cached is not None:
        return cached
    tokenizer = Tokenizer.from_file(str(corpus.tokenizer_dir / "tokenizer.json"))
    training = _document_hashes(corpus)
    needed = n_samples * corpus.seq_len
    stream: list[int] = []
    ids: list[str] = []
    leaked: list[str] = []
    for doc_id, text in documents:
        encoded = tokenizer.encode(text, add_special_tokens=False).ids
        if not encoded:
            continue
        if hashlib.sha256(np.asarray(encoded, dtype=np.int64).tobytes()).digest() in training:
            leaked.append(doc_id)
            continue
        ids.append(doc_id)
        stream.extend(encoded)
        stream.append(corpus.eos_id)
        if len(stream) >= needed:
            break
    if leaked and heldout is not None:
        raise ZooError(
            f"{len(leaked)} document(s) of the held-out source {source} are also training documents "
            f"(e.g. {', '.join(leaked[:5])}); a held-out set must hold only unseen documents"
        )
    if len(stream) < needed:
        raise ZooError(
            f"the held-out source ({rule}) gives only {len(stream) // corpus.seq_len} samples of "
            f"{corpus.seq_len} tokens; asked for {n_samples}: ask for fewer or give heldout='SOURCE'"
        )
    tokens = np.asarray(stream[:needed], dtype=np.int64).reshape(n_samples, corpus.seq_len)
    result = HeldOut(
        tokens, source, rule, tuple(ids), hashlib.sha256(tokens.tobytes()).hexdigest()[:16]
    )
    _write_cache(key, result)
    return result


def _read_cache(key: str, seq_len: int) -> HeldOut | None:
    folder = cache_dir("heldout")
    meta_file, tokens_file = folder / f"{key}.json", folder / f"{key}.bin"
    if not meta_file.exists() or not tokens_file.exists():
        return None
    meta = json.loads(meta_file.read_text())
    tokens = np.frombuffer(tokens_file.read_bytes(), dtype="<i8").reshape(-1, seq_len)
    if hashlib.sha256(tokens.tobytes()).hexdigest()[:16] != meta["fingerprint"]:
        return None  # a damaged cache entry is rebuilt
    return HeldOut(
        tokens.copy(),
        meta["source"],
        meta["rule"],
        tuple(meta["document_ids"]),
        meta["fingerprint"],
    )


def _write_cache(key: str, heldout: HeldOut) -> None:
    folder = cache_dir("heldout")
    tmp = folder / f"{key}.bin.partial"
    tmp.write_bytes(heldout.tokens.astype("<i8").tobytes())
    tmp.replace(folder / f"{key}.bin")
    meta = {
        "source": heldout.source,
        "rule": heldout.rule,
        "document_ids": list(heldout.document_ids),
        "fingerprint": heldout.fingerprint,
    }
    tmp = folder / f"{key}.json.partial"
    tmp.write_text(json.dumps(meta))
    tmp.replace(folder / f"{key}.json")
