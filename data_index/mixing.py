"""A weighted mix of text sources as one corpus: `mix:[{"source": S, "weight": W}, ...]`.

Why a mix: a natural corpus this small rarely repeats a span within a context window, so the
phenomena that need repeats (induction heads) barely form; mixing in documents that repeat random
segments gives them a reason to. The mix is deterministic and needs no seed: documents are taken
in each source's own order, and the next one always comes from the source that is furthest below
its share of the characters so far (the smallest characters/weight; ties go to the earlier
source). The mix ends when the source that is due runs out, so the shares hold to the end. Each
document id is prefixed with its source's position in the list: "s0:module:qualname".
The training order over the packed samples is unchanged: a pure function of the data seed.

A part drawn from the tokenizer (builtin:induction_tokens) makes the whole mix tokenizer-bound:
the tokenizer is trained on the mix of the other parts (same rule), then every part is mixed.
"""
from __future__ import annotations

import json
from collections.abc import Iterator

from data_index.builtin_sources import DocumentSource, TokenizerBoundSource
from data_index.tasks import TaskSamples
from zoo_common.errors import ZooError

PREFIX = "mix:"


def mix_spec(parts: list[tuple[str, float]]) -> str:
    """The canonical source string of a mix (what corpora record and fingerprints follow)."""
    return PREFIX + json.dumps([{"source": s, "weight": float(w)} for s, w in parts], separators=(",", ":"))


def resolve_mix(spec: str, resolve) -> DocumentSource | TokenizerBoundSource:
    """`mix:[...]` -> one source; `resolve` turns each part's source string into its own."""
    try:
        parts = json.loads(spec[len(PREFIX):])
    except ValueError as exc:
        raise ZooError(f"a mix is mix:[{{\"source\": ..., \"weight\": ...}}, ...] in JSON: {exc}") from None
    if not isinstance(parts, list) or not parts:
        raise ZooError("a mix needs a non-empty list of {source, weight}")
    sources, weights = [], []
    for i, part in enumerate(parts):
        if not isinstance(part, dict) or set(part) != {"source", "weight"}:
            raise ZooError(f"data.sources[{i}] must be {{source, weight}}, got {part!r}")
        weight = part["weight"]
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
            raise ZooError(f"data.sources[{i}].weight must be a number > 0, got {weight!r}")
        resolved = resolve(part["source"])
        if isinstance(resolved, TaskSamples):
            raise ZooError(f"data.sources[{i}]: {part['source']} is a task, not text; a mix takes text sources")
        sources.append(resolved)
        weights.append(float(weight))
    whole = mix_spec([(s.spec, w) for s, w in zip(sources, weights)])
    if not any(isinstance(s, TokenizerBoundSource) for s in sources):
        return _mixed(whole, sources, weights)
    plain = [(s, w) for s, w in zip(sources, weights) if isinstance(s, DocumentSource)]
    unbound = _mixed(mix_spec([(s.spec, w) for s, w in plain]), *map(list, zip(*plain))) if plain else None

    def bind(tokenizer) -> DocumentSource:
        bound = [s.bind(tokenizer) if isinstance(s, TokenizerBoundSource) else s for s in sources]
        return _mixed(whole, bound, weights)

    return TokenizerBoundSource(whole, bind, unbound, _metadata(sources, weights))


def _metadata(sources, weights) -> dict:
    return {"mix": [{"source": s.spec, "weight": w, "metadata": s.metadata} for s, w in zip(sources, weights)]}


def _mixed(spec: str, sources: list[DocumentSource], weights: list[float]) -> DocumentSource:
    """The documents of `sources` interleaved by the rule above."""

    def documents() -> Iterator[tuple[str, str]]:
        streams = [iter(s.documents()) for s in sources]
        chars = [0.0] * len(streams)
        while True:
            due = min(range(len(streams)), key=lambda i: (chars[i] / weights[i], i))
            item = next(streams[due], None)
            if item is None:
                return
            doc_id, text = item
            chars[due] += len(text)
            yield f"s{due}:{doc_id}", text

    return DocumentSource(spec, documents, _metadata(sources, weights))
