"""Built-in offline corpora: real English text and the synthetic tasks interpretability research uses.

- `builtin:pydoc` — the docstrings of the running Python's standard library (modules, classes,
  functions; `ast.get_docstring` cleaned with `inspect.cleandoc`), walked in sorted path order,
  skipping test/, tests/, idlelib/, lib2to3/, site-packages/, keeping docstrings of >= 200
  characters. It is real technical English present on every machine without network (~1.2 MB,
  ~2,200 documents on CPython 3.11). The text depends on the Python version, which is recorded in
  the corpus metadata; the corpus fingerprint pins the exact text. Document id "module.path:qualname"
  ("module.path:<module>" for a module docstring).
- `builtin:induction` — documents made of a random sequence of symbols repeated (the setting in
  which induction heads form). Document id "induction:<seed>:<i>".
- `builtin:induction_tokens` — the same documents drawn from the corpus tokenizer's own tokens, so
  the repeats cover the vocabulary the text uses (the induction family's data; why in
  benchmarks/RESULTS.md). It exists once a tokenizer does: in a mix, the tokenizer is trained on
  the other sources and this one is drawn from it. Document id "induction_tokens:<seed>:<i>".
- `builtin:modular` — the grokking task, not text: every pair as the tokens `a b = c` over a
  symbolic vocabulary, the loss on c, a train/test split by the run's data seed (tasks.py).
  Params: p (113), train_fraction (0.3), op (add, sub, mul).

Randomness uses the counter-based generator of `order.py`, never numpy's Generator streams, so a
seed means the same text on every numpy version.
"""
from __future__ import annotations

import ast
import os
import sys
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from urllib.parse import parse_qsl

from tokenizers import Tokenizer

from zoo_common.errors import ZooError
from data_index.order import random_uint64, stream_key
from data_index.tasks import TaskSamples, modular

BUILTIN_SOURCES: dict[str, str] = {
    "pydoc": "docstrings of this Python's standard library (real English, offline); params: max_docs, "
             "min_chars, max_chars (0: no limit; min_chars=80&max_chars=199 gives documents the "
             "default, min_chars=200, never trains on)",
    "induction": "random symbol sequences repeated (induction heads); params: n_docs, length, repeats, symbols, "
                 "seed, min_length (0: = length), gap (random symbols before each copy: 0..gap)",
    "induction_tokens": "builtin:induction over the corpus tokenizer's tokens (mix it with text, which "
                        "trains the tokenizer); params: n_docs, length, repeats, seed, min_length, gap",
    "modular": "the grokking task: 'a b = c' with c = (a op b) mod p, loss on c, a train/test split "
               "by the data seed; params: p, train_fraction, op (add, sub, mul)",
}

SKIPPED_DIRS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "__pycache__"}
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


@dataclass(frozen=True)
class DocumentSource:
    """Where documents come from: `documents()` yields (document id, text) the same way every call."""

    spec: str
    documents: Callable[[], Iterator[tuple[str, str]]]
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TokenizerBoundSource:
    """A text source drawn from the corpus tokenizer's vocabulary, so it exists only once the
    tokenizer does. Corpus preparation trains the tokenizer on `unbound` (the plain text beside
    it in a mix; None when there is none), then reads `bind(tokenizer).documents()`."""

    spec: str
    bind: Callable[[Tokenizer], DocumentSource]
    unbound: DocumentSource | None = None
    metadata: dict = field(default_factory=dict)


def resolve_builtin(spec: str) -> DocumentSource | TokenizerBoundSource | TaskSamples:
    """`NAME?k=v&k=v` -> a DocumentSource (text) or TaskSamples (a task); unknown names or
    parameters, or values of the wrong type, are errors naming the parameter."""
    name, _, query = spec.partition("?")
    if name not in BUILTIN_SOURCES:
        valid = ", ".join(f"builtin:{n}" for n in BUILTIN_SOURCES)
        raise ZooError(f"unknown built-in source {name!r}; valid: {valid}")
    defaults = _DEFAULTS[name]
    params = dict(defaults)
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if key not in defaults:
            raise ZooError(f"builtin:{name} has no parameter {key!r}; valid: {', '.join(defaults)}")
        params[key] = _parameter(name, key, value, type(defaults[key]))
    shown = {k: v for k, v in params.items() if (name, k, v) not in _OMITTED_AT_DEFAULT}
    canonical = f"builtin:{name}?" + "&".join(f"{k}={v}" for k, v in sorted(shown.items()))
    return _BUILDERS[name](canonical, **params)


def _parameter(source: str, key: str, value: str, kind: type):
    """One `k=v` of a source string as the type of its default (int, float or str)."""
    if kind is str:
        return value
    try:
        parsed = kind(value)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ZooError(f"builtin:{source} parameter {key} must be {what}, got {value!r}") from None
    if kind is int and parsed < 0:
        raise ZooError(f"builtin:{source} parameter {key} must be >= 0, got {value}")
    return parsed


def _pydoc(spec: str, *, max_docs: int, min_chars: int, max_chars: int = 0) -> DocumentSource:
    stdlib = Path(sysconfig.get_paths()["stdlib"])

    cache: list[tuple[str, str]] = []  # ~1.2 MB; parsing the stdlib twice would double prepare time

    def documents() -> Iterator[tuple[str, str]]:
        if not cache:
            cache.extend(islice(_stdlib_docstrings(stdlib, min_chars, max_chars), max_docs or None))
        yield from cache

    meta = {"python_version": sys.version.split()[0], "python_implementation": sys.implementation.name,
            "stdlib": str(stdlib)}
    return DocumentSource(spec, documents, meta)


def _stdlib_files(stdlib: Path) -> Iterator[Path]:
    """Every .py file below `stdlib` in sorted path order, never entering a skipped folder."""
    files: list[Path] = []
    for folder, subfolders, names in os.walk(stdlib):
        subfolders[:] = [d for d in subfolders if d not in SKIPPED_DIRS]
        files.extend(Path(folder, n) for n in names if n.endswith(".py"))
    yield from sorted(files)


def _stdlib_docstrings(stdlib: Path, min_chars: int, max_chars: int = 0) -> Iterator[tuple[str, str]]:
    for path in _stdlib_files(stdlib):
        parts = list(path.relative_to(stdlib).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        module = ".".join(parts)
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError):
            continue  # a few stdlib files are templates or other-version syntax: not documents
        seen: set[str] = set()
        for qualname, node in _definitions(tree, ""):
            text = ast.get_docstring(node, clean=True)
            if not text or len(text) < min_chars or (max_chars and len(text) > max_chars):
                continue
            doc_id = f"{module}:{qualname or '<module>'}"
            unique, n = doc_id, 1
            while unique in seen:  # a name defined twice (if/else branches) keeps both, in order
                n += 1
                unique = f"{doc_id}#{n}"
            seen.add(unique)
            yield unique, text


def _definitions(node: ast.AST, prefix: str) -> Iterator[tuple[str, ast.AST]]:
    """The node itself, then every class/function below it in source order, with qualnames."""
    yield prefix, node
    for child in _child_definitions(node):
        qualname = f"{prefix}.{child.name}" if prefix else child.name
        yield from _definitions(child, qualname)


def _child_definitions(node: ast.AST) -> Iterator[ast.AST]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield child
        elif isinstance(child, (ast.If, ast.Try, ast.With, ast.For, ast.While)) or type(child).__name__ == "TryStar":
            yield from _child_definitions(child)


def _symbol_alphabet(size: int) -> list[str]:
    """A fixed alphabet of pronounceable two-letter symbols ("ba", "be", ...), then three-letter ones."""
    pairs = [c + v for c in _CONSONANTS for v in _VOWELS]
    triples = [c + v + d for c in _CONSONANTS for v in _VOWELS for d in _CONSONANTS]
    alphabet = pairs + triples
    if not 2 <= size <= len(alphabet):
        raise ZooError(f"builtin:induction symbols must lie in 2..{len(alphabet)}, got {size}")
    return alphabet[:size]


def _induction(spec: str, *, n_docs: int, length: int, repeats: int, symbols: int, seed: int,
               min_length: int, gap: int) -> DocumentSource:
    """Document i: a random sequence of `min_length..length` symbols, `repeats` times, each copy
    after 0..`gap` random symbols. Varying length and gap keep the repeat's distance from being a
    constant that a positional head could learn instead of induction."""
    alphabet = _symbol_alphabet(symbols)
    documents = _repeat_documents("induction", alphabet, " ", n_docs=n_docs, length=length, repeats=repeats,
                                  seed=seed, min_length=min_length, gap=gap)
    return DocumentSource(spec, documents, {"generator": "induction"})


def _induction_tokens(spec: str, *, n_docs: int, length: int, repeats: int, seed: int, min_length: int,
                      gap: int) -> TokenizerBoundSource:
    """builtin:induction whose symbols are the tokenizer's tokens, written as their text.

    Why: induction heads generalise to the tokens they were trained to copy. Repeats of syllables
    cover only the syllables' tokens, and the induction stripe on the text's other tokens stayed
    ~0 (benchmarks/RESULTS.md). The alphabet is every token, in id order, that decodes on its own
    to text without a replacement character (a lone UTF-8 continuation byte does not), special
    tokens excluded. Re-encoding the text can merge across a boundary now and then; the stored
    tokens are what the runs train on and what the index records."""
    _check_repeat_parameters("induction_tokens", n_docs=n_docs, length=length, repeats=repeats,
                             min_length=min_length)

    def bind(tokenizer: Tokenizer) -> DocumentSource:
        special = set(tokenizer.get_added_tokens_decoder())
        alphabet = [text for i in range(tokenizer.get_vocab_size()) if i not in special
                    for text in [tokenizer.decode([i])] if text and "\ufffd" not in text]
        if len(alphabet) < 2:
            raise ZooError(f"builtin:induction_tokens needs a tokenizer with >= 2 text tokens, got {len(alphabet)}")
        documents = _repeat_documents("induction_tokens", alphabet, "", n_docs=n_docs, length=length,
                                      repeats=repeats, seed=seed, min_length=min_length, gap=gap)
        return DocumentSource(spec, documents, {"generator": "induction_tokens", "alphabet_size": len(alphabet)})

    return TokenizerBoundSource(spec, bind, None, {"generator": "induction_tokens"})


def _check_repeat_parameters(name: str, *, n_docs: int, length: int, repeats: int, min_length: int) -> None:
    if n_docs < 1 or length < 1 or repeats < 1:
        raise ZooError(f"builtin:{name} needs n_docs, length and repeats >= 1")
    if min_length > length:
        raise ZooError(f"builtin:{name} parameter min_length ({min_length}) must be <= length ({length})")


def _repeat_documents(name: str, alphabet: list[str], joiner: str, *, n_docs: int, length: int, repeats: int,
                      seed: int, min_length: int, gap: int) -> Callable[[], Iterator[tuple[str, str]]]:
    """The documents of a repeat source over `alphabet`, its symbols joined by `joiner`."""
    _check_repeat_parameters(name, n_docs=n_docs, length=length, repeats=repeats, min_length=min_length)
    min_length = min_length or length

    def documents() -> Iterator[tuple[str, str]]:
        for i in range(n_docs):
            if min_length == length and gap == 0:  # the original layout, kept draw for draw
                draws = random_uint64(stream_key(seed, i), length) % len(alphabet)
                sequence = joiner.join(alphabet[j] for j in draws.tolist())
                yield f"{name}:{seed}:{i}", joiner.join([sequence] * repeats)
                continue
            shape = random_uint64(stream_key(seed, i, 1), 1 + repeats)
            size = min_length + int(shape[0] % (length - min_length + 1))
            draws = random_uint64(stream_key(seed, i), size) % len(alphabet)
            sequence = [alphabet[j] for j in draws.tolist()]
            words: list[str] = []
            for copy in range(repeats):
                n_gap = int(shape[1 + copy] % (gap + 1))
                noise = random_uint64(stream_key(seed, i, 2, copy), n_gap) % len(alphabet)
                words += [alphabet[j] for j in noise.tolist()] + sequence
            yield f"{name}:{seed}:{i}", joiner.join(words)

    return documents


_DEFAULTS: dict[str, dict[str, int | float | str]] = {
    "pydoc": {"max_docs": 0, "min_chars": 200, "max_chars": 0},
    "induction": {"n_docs": 2000, "length": 32, "repeats": 2, "symbols": 64, "seed": 0,
                  "min_length": 0, "gap": 0},
    "induction_tokens": {"n_docs": 2000, "length": 16, "repeats": 2, "seed": 0, "min_length": 0, "gap": 0},
    "modular": {"p": 113, "train_fraction": 0.3, "op": "add"},
}
# parameters added after corpora were prepared, left out of the canonical source at their default
# (so those corpora keep their fingerprints)
_OMITTED_AT_DEFAULT = {("pydoc", "max_chars", 0)}
_BUILDERS = {"pydoc": _pydoc, "induction": _induction, "induction_tokens": _induction_tokens, "modular": modular}
