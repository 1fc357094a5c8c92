"""`zoo.attribute`: which training samples of a window moved a target, stored beside the evaluations.

    result = zoo.attribute("induction-attn2l", seed=1, target="repetition", from_step=1100,
                           until_step=1200)
    result.per_sample("adam")          # one row per sample id: its summed score, steps, document
    print(result.format(k=10))         # the top and bottom samples with their text

Scores (zoo.attribution.trajectory) are stored at evals/FAMILY/attributions/KEY.parquet with a
JSON record of what they were computed from (the run's record, its data index, the target); a
second call with the same arguments reads them, and a retrained run or another target recomputes.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from zoo_common.errors import ArgumentError
from zoo.attribution.targets import Target, run_target
from zoo.attribution.trajectory import METHODS, attribute_window, check_window

FOLDER = "attributions"
FORMAT = 1


@dataclass(frozen=True, eq=False)
class Attribution:
    """Scores of every (step, slot) of the window on the target, for each method."""

    name: str
    seed: int
    branch: str
    target: str
    target_words: str
    from_step: int
    until_step: int
    table: pa.Table  # step, slot, sample_id, document_id, method, score
    seconds: float
    path: str  # where it is stored, relative to the store
    heldout: str | None = None  # with target "heldout": the held-out source asked for (None: default)

    def per_sample(self, method: str = "adam") -> pa.Table:
        """sample_id, document_id, score (summed over the steps it was trained on), steps."""
        _check_method(method)
        rows = self.table.filter(pc.equal(self.table.column("method"), method))
        grouped = rows.group_by(["sample_id", "document_id"]).aggregate(
            [("score", "sum"), ("step", "list")])
        grouped = grouped.rename_columns(["sample_id", "document_id", "score", "steps"])
        return grouped.sort_by([("score", "descending"), ("sample_id", "ascending")])

    def ranked(self, method: str = "adam") -> list[int]:
        """Sample ids from the highest score (lowered the target loss most) to the lowest."""
        return self.per_sample(method).column("sample_id").to_pylist()

    def format(self, k: int = 10, *, method: str = "adam", texts=None) -> str:
        """The k highest and k lowest samples, with their text when `texts(sample_id)` is given."""
        table = self.per_sample(method).to_pylist()
        lines = [f"{self.name} seed {self.seed}{'@' + self.branch if self.branch else ''}: "
                 f"{len(table)} samples in steps ({self.from_step}, {self.until_step}] scored on "
                 f"{self.target_words} ({method}; {self.seconds:.1f} s)",
                 "score > 0: the sample lowered the target loss (dropping it should raise it)"]
        for title, part in (("highest", table[:k]), ("lowest", table[-k:][::-1])):
            lines.append(f"\n{title} {len(part)}:")
            for row in part:
                text = ""
                if texts is not None:
                    text = "  " + texts(row["sample_id"]).replace("\n", "\\n")[:80]
                lines.append(f"  {row['score']:+.3e}  sample {row['sample_id']} ({row['document_id']}, "
                             f"steps {', '.join(map(str, row['steps']))}){text}")
        return "\n".join(lines)


def attribute(name: str, *, seed: int, target: str, from_step: int, until_step: int,
              store=None, branch: str | None = None, heldout: str | None = None,
              recompute: bool = False, progress: bool = True) -> Attribution:
    """Score every training sample of steps (from_step, until_step] of (name, seed) on `target`
    (zoo.attribution.targets: heldout, samples:ID,..., repetition), both methods; stored."""
    from zoo.store.catalog import open_run, open_store
    from zoo.store.corpora import open_corpus

    store = open_store(store)
    run = open_run(name, seed=seed, store=store, branch=branch)
    a, b = check_window(run, from_step, until_step)
    record = run.read_json("run.json")
    corpus = open_corpus(store, record["corpus_fingerprint"])
    built = run_target(target, record, corpus, heldout=heldout)
    source = _source(run, built, a, b, heldout)
    path = f"evals/{run.run_id.family}/{FOLDER}/{_key(run, target, a, b)}"
    if not recompute:
        found = _read(store, path, source)
        if found is not None:
            return _result(run, built, a, b, *found, path, heldout)
    table = attribute_window(run, store=store, target=built, from_step=a, until_step=b,
                             progress=progress)
    seconds = float(table.schema.metadata[b"seconds"])
    _write(store, path, table.replace_schema_metadata(None), source, seconds, built.words)
    return _result(run, built, a, b, table.replace_schema_metadata(None), seconds, path, heldout)


def _result(run, target: Target, a: int, b: int, table, seconds: float, path: str,
            heldout: str | None) -> Attribution:
    rid = run.run_id
    return Attribution(rid.model_name, rid.seed, rid.branch, target.spec, target.words, a, b, table,
                       seconds, path, heldout)


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ArgumentError(f"unknown attribution method {method!r}; valid: {', '.join(METHODS)}")


def _key(run, target: str, a: int, b: int) -> str:
    rid = run.run_id
    slug = re.sub(r"[^a-z0-9_.-]", "_", target.lower())[:40]
    digest = hashlib.sha256(target.encode()).hexdigest()[:8]
    branch = f"@{rid.branch}" if rid.branch else ""
    return f"{rid.size}-seed-{rid.seed}{branch}.{slug}.{digest}.{a}-{b}"


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def run_digests(run) -> dict:
    """The digests of the run's record and data index that stored scores were computed from."""
    return {"run_record": _digest(run.read_json("run.json")), "index": _digest(run.index_record())}


def _source(run, target: Target, a: int, b: int, heldout: str | None) -> dict:
    """What the scores are computed from: a change to any of it makes them stale."""
    return {"format": FORMAT, **run_digests(run), "target": target.spec,
            **({"heldout": heldout} if heldout is not None else {}),
            "target_tokens": hashlib.sha256(target.tokens.numpy().tobytes()
                                            + target.mask.numpy().tobytes()).hexdigest(),
            "window": [a, b], "methods": list(METHODS)}


def _read(store, path: str, source: dict):
    meta = store.location.read_if_exists(path + ".json")
    if meta is None:
        return None
    meta = json.loads(meta)
    if meta.get("source") != source:
        return None  # computed from something else (a retrained run, another target): recompute
    data = store.location.read_if_exists(path + ".parquet")
    if data is None or hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        return None  # missing or damaged: recompute rather than serve it
    return pq.read_table(io.BytesIO(data)), float(meta["seconds"])


def _write(store, path: str, table: pa.Table, source: dict, seconds: float,
           target_words: str) -> None:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    data = sink.getvalue()
    store.location.write_atomic(path + ".parquet", data)
    store.location.write_atomic(path + ".json", json.dumps(
        {"source": source, "sha256": hashlib.sha256(data).hexdigest(), "seconds": seconds,
         "rows": table.num_rows, "target_words": target_words}, indent=2, sort_keys=True).encode())


def sample_scores(result: Attribution, method: str) -> dict[int, float]:
    """sample id -> summed score, for the check's subsets."""
    table = result.per_sample(method)
    return dict(zip(table.column("sample_id").to_pylist(),
                    np.asarray(table.column("score").to_numpy(), dtype=float).tolist()))
