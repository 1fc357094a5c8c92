"""Evaluation results in the store: `evals/<family>/part-*.parquet`, one long table.

One row per (size, seed, step, metric, field): `field` is "" for a metric that returns a number,
and the key for a metric that returns a dict (e.g. `induction` gives one row per head, "L0H1",
plus "max"). Long rows take any user metric without a schema change; `zoo.tables.metrics_table`
turns them into columns (`loss`, `induction.max`, `induction.L0H1`, ...).

Why not data_index's PartLog: its key must not decrease, and an evaluation visits (size, seed,
step) in any order and may run in several processes at once. Here each flush is one immutable part
with a unique name, written atomically (tmp + rename locally, one PUT on object stores), so a killed
evaluation keeps every flushed row and a reader never sees half a part. Two processes that evaluated
the same cell both keep their row; readers take the latest part's (sorted by name = by write time),
so re-evaluating a cell (e.g. on a new held-out set) supersedes the old row.
`heldout` records the held-out set's fingerprint for `loss` / `icl` rows ("" otherwise), so results
on another held-out set are never mixed in silently. `weights` records which stored weights were
measured (the checkpoint manifest's tensor references, hashed): a run deleted and retrained under
the same name gets its cells evaluated again instead of keeping the old model's numbers. `probes`
records the fingerprint of the corpus a built-in metric drew its probes from (the held-out set,
the random-token pool: the first run of a branch's line, zoo.eval.evaluate), "" for a user
metric. Parts written before a column existed read it as "" (unknown).
"""

from __future__ import annotations

import io
import os
import time
import uuid

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from zoo_common.errors import IntegrityError
from zoo_common.location import Location
from zoo.config.names import check_family, split_branch

KEYS = ("family", "size", "seed", "step")
SCHEMA = pa.schema(
    [
        ("family", pa.string()),
        ("size", pa.string()),
        ("seed", pa.int64()),
        ("step", pa.int64()),
        ("metric", pa.string()),
        ("field", pa.string()),
        ("value", pa.float64()),
        ("heldout", pa.string()),
        ("weights", pa.string()),
        ("probes", pa.string()),
    ]
)


def results_location(store, family: str) -> Location:
    """evals/<family>/, and evals/<family>@<label>/ for a branch family (zoo branch)."""
    base, label = split_branch(family)
    return store.location.child("evals", check_family(base) + (f"@{label}" if label else ""))


class ResultsLog:
    """Buffered writer and reader of one family's evaluation results."""

    def __init__(self, store, family: str) -> None:
        self.store = store
        self.family = family
        self.location = results_location(store, family)
        self._rows: list[dict] = []

    def add(
        self,
        size: str,
        seed: int,
        step: int,
        metric: str,
        values: dict[str, float],
        heldout: str = "",
        weights: str = "",
        *,
        probes: str = "",
    ) -> None:
        for field, value in values.items():
            self._rows.append(
                {
                    "family": self.family,
                    "size": size,
                    "seed": seed,
                    "step": step,
                    "metric": metric,
                    "field": field,
                    "value": value,
                    "heldout": heldout,
                    "weights": weights,
                    "probes": probes,
                }
            )

    @property
    def pending(self) -> int:
        return len(self._rows)

    def flush(self) -> None:
        """Write the buffered rows as one new part (atomic); nothing happens when none are buffered."""
        if not self._rows:
            return
        table = pa.Table.from_pylist(self._rows, schema=SCHEMA)
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        name = f"part-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
        self.store.ensure_created()
        self.location.write_atomic(name, sink.getvalue())
        self._rows = []

    def read(self) -> pa.Table:
        """Every flushed row, one per (size, seed, step, metric, field): the latest part wins."""
        tables = []
        for name in self.location.list():
            if not (name.startswith("part-") and name.endswith(".parquet")):
                continue
            data = self.location.read_bytes(name)
            try:
                part = pq.read_table(pa.BufferReader(data))
                for column in ("weights", "probes"):  # written before the column existed
                    if column not in part.column_names:
                        part = part.append_column(column, pa.array([""] * part.num_rows, pa.string()))
                tables.append(part.select(SCHEMA.names).cast(SCHEMA))
            except (pa.ArrowInvalid, ValueError, OSError) as exc:
                raise IntegrityError(
                    f"evaluation part {self.location.path(name)} is damaged ({len(data)} bytes): {exc}"
                ) from None
        if not tables:
            return SCHEMA.empty_table()
        table = pa.concat_tables(tables)
        table = table.append_column("_row", pa.array(range(table.num_rows), pa.int64()))
        cells = ["size", "seed", "step", "metric", "field"]
        latest = table.group_by(cells, use_threads=False).aggregate([("_row", "max")])
        keep = pc.is_in(table.column("_row"), value_set=latest.column("_row_max"))
        return (
            table.filter(keep)
            .drop_columns(["_row"])
            .sort_by(
                [
                    ("size", "ascending"),
                    ("seed", "ascending"),
                    ("step", "ascending"),
                    ("metric", "ascending"),
                    ("field", "ascending"),
                ]
            )
        )

    def done(self, heldout_of: dict[str, str],
             weights_of: dict[tuple[str, int, int], str] | None = None,
             probes_of: dict[tuple[str, int, str], frozenset] | None = None,
             ) -> set[tuple[str, int, int, str]]:
        """(size, seed, step, metric) cells already evaluated; `loss`/`icl` count only when they
        were measured on the held-out set named in heldout_of[metric], any cell only when it
        was measured on the weights weights_of[(size, seed, step)] names (rows of unknown weights,
        from older versions, count), and only when its probes are one of probes_of[(size, seed,
        metric)] (a branch measured on its own corpus' probes is measured again)."""
        weights_of, probes_of = weights_of or {}, probes_of or {}
        table = self.read()
        cells = set()
        columns = ("size", "seed", "step", "metric", "heldout", "weights", "probes")
        for size, seed, step, metric, heldout, weights, probes in zip(
            *(table.column(c).to_pylist() for c in columns)
        ):
            current = weights_of.get((size, seed, step), weights)
            accepted = probes_of.get((size, seed, metric), (probes,))
            if (heldout_of.get(metric, heldout) == heldout and weights in ("", current)
                    and probes in accepted):
                cells.add((size, seed, step, metric))
        return cells
