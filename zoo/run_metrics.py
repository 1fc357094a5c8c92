"""Per-step training metrics of a run: written by the training loop, read by anyone.

One row per step: loss, learning rate, gradient norm (before clipping), tokens seen, wall time.
Stored as an append-safe Parquet part log beside the run's checkpoints.
"""
from __future__ import annotations

import pyarrow as pa

from data_index import PartLog

METRICS_SCHEMA = pa.schema(
    [
        ("step", pa.int64()),
        ("loss", pa.float64()),
        ("lr", pa.float64()),
        ("grad_norm", pa.float64()),
        ("tokens", pa.int64()),
        ("wall_time", pa.float64()),
    ]
)


def metrics_log(run) -> PartLog:
    return PartLog(run.metrics_location, schema=METRICS_SCHEMA)


def read_run_metrics(run) -> pa.Table:
    """The run's per-step metrics, sorted by step."""
    table = metrics_log(run).read()
    return table.sort_by("step")
