"""One table per family: training metrics and evaluation results across (size, seed, step).

    table = zoo.metrics("tiny")            # pyarrow.Table; table.to_pandas() for pandas
    df = table.to_pandas(); df[df.step == 256].groupby("size").loss.mean()

Rows: every (size, seed, step) that has a training-metrics row (steps 1..N) or an evaluation
(stored checkpoints, including step 0). Columns: family, size, seed, step; the training metrics
as logged (`train_loss` — the training batch's loss, renamed so it never meets the held-out `loss`
— `lr`, `grad_norm`, `tokens`, `wall_time`); then one column per evaluated metric: `loss`, `icl`,
or `<metric>.<field>` for dict metrics (`induction.max`, `induction.L0H1`). A missing value is
null (not evaluated at that step, or no training row at step 0); a NaN is a NaN the metric gave.
Built with pyarrow joins, no hand-rolled frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from zoo.config.names import labelled
from zoo.eval.results import KEYS, ResultsLog
from zoo.eval.evaluate import family_runs
from zoo.store.run_metrics import METRICS_SCHEMA, read_run_metrics
from zoo.store.store import Store

TRAINING_RENAMES = {"loss": "train_loss"}


def _training_table(store: Store, family: str, runs) -> pa.Table:
    parts = []
    for run_id in runs:
        table = read_run_metrics(store.run(run_id))
        n = table.num_rows
        keys = {
            "family": pa.array([family] * n, pa.string()),
            "size": pa.array([run_id.size] * n, pa.string()),
            "seed": pa.array([run_id.seed] * n, pa.int64()),
        }
        columns = {
            **keys,
            **{TRAINING_RENAMES.get(c, c): table.column(c) for c in table.column_names},
        }
        parts.append(pa.table(columns))
    if parts:
        return pa.concat_tables(parts)
    names = [TRAINING_RENAMES.get(f.name, f.name) for f in METRICS_SCHEMA]
    fields = [
        pa.field("family", pa.string()),
        pa.field("size", pa.string()),
        pa.field("seed", pa.int64()),
    ]
    return pa.schema(
        fields + [pa.field(n, f.type) for n, f in zip(names, METRICS_SCHEMA)]
    ).empty_table()


def eval_columns(results: pa.Table) -> list[tuple[str, str, str]]:
    """(column name, metric, field) for every evaluated quantity, in a stable order."""
    pairs = results.select(["metric", "field"]).group_by(["metric", "field"]).aggregate([])
    found = sorted(zip(pairs.column("metric").to_pylist(), pairs.column("field").to_pylist()))
    return [
        (metric if not field else f"{metric}.{field}", metric, field) for metric, field in found
    ]


HELDOUT_PREFIX = "heldout."  # metrics_table's column of the held-out set a metric was measured on


def metrics_table(
    family: str, *, store: str | Store | None = None, sizes: Sequence[str] | None = None,
    branch: str | None = None,
) -> pa.Table:
    """Training metrics and evaluation results of every run of `family`, one row per (size, seed,
    step), sorted by size, seed, step. Pandas: `.to_pandas()`. `branch=LABEL` (or `family@LABEL`)
    reads the family's branch LABEL: the runs branched under it (zoo eval FAMILY@LABEL).

    Metrics measured on a held-out set (loss, icl) get a `heldout.METRIC` column beside their
    values: the set's fingerprint, so that values measured on different sets (zoo eval with other
    --heldout / --heldout-samples) are never averaged unknowingly."""
    from zoo.store.catalog import open_store

    store = open_store(store)
    family = labelled(family, branch)
    sizes = [sizes] if isinstance(sizes, str) else sizes
    runs = family_runs(store, family, sizes=sizes)
    table = _training_table(store, family, runs)
    results = ResultsLog(store, family).read()
    if sizes:
        results = results.filter(pc.is_in(results.column("size"), value_set=pa.array(list(sizes))))
    for column, metric, field in eval_columns(results):
        mask = pc.and_(
            pc.equal(results.column("metric"), metric), pc.equal(results.column("field"), field)
        )
        values = results.filter(mask).select([*KEYS, "value"]).rename_columns([*KEYS, column])
        table = table.join(values, keys=list(KEYS), join_type="full outer", use_threads=False)
    for metric in sorted(set(results.column("metric").to_pylist())):
        rows = results.filter(pc.and_(pc.equal(results.column("metric"), metric),
                                      pc.not_equal(results.column("heldout"), "")))
        if rows.num_rows:
            sets = rows.select([*KEYS, "heldout"]).group_by(list(KEYS), use_threads=False).aggregate(
                [("heldout", "max")]).rename_columns([*KEYS, f"{HELDOUT_PREFIX}{metric}"])
            table = table.join(sets, keys=list(KEYS), join_type="full outer", use_threads=False)
    return table.sort_by(
        [("size", "ascending"), ("seed", "ascending"), ("step", "ascending")]
    ).combine_chunks()
