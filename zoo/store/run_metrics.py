"""Per-step training metrics of a run: written by the training loop, read by anyone.

One row per step: loss, learning rate, gradient norm (before clipping), tokens seen, wall time.
Stored as an append-safe Parquet part log beside the run's checkpoints.
"""
from __future__ import annotations

import numpy as np
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


def metrics_log(run, *, write_part=None) -> PartLog:
    """The run's metrics log (`write_part`: see PartLog)."""
    return PartLog(run.metrics_location, schema=METRICS_SCHEMA, write_part=write_part)


class MetricsWriter:
    """The training loop's side of the log: `record` keeps a tuple, and every `flush_every` steps
    (and on `flush`/`close`) the rows become one part. Per step that is one list append: right
    after a training step every numpy call runs on cold caches (see StepIndexWriter)."""

    def __init__(self, run, *, flush_every: int = 64, write_part=None) -> None:
        self._log = metrics_log(run, write_part=write_part)
        self._rows: list[tuple] = []
        self._flush_every = flush_every

    def truncate_after(self, step: int) -> None:
        """Drop rows after `step` (resuming from a keyframe there)."""
        self._rows = [row for row in self._rows if row[0] <= step]
        self._log.truncate_after(step)

    def record(self, step: int, *, loss: float, lr: float, grad_norm: float, tokens: int,
               wall_time: float) -> None:
        self._rows.append((step, loss, lr, grad_norm, tokens, wall_time))
        if len(self._rows) >= self._flush_every:
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        columns, self._rows = list(zip(*self._rows)), []
        self._log.append({field.name: np.asarray(column, dtype=field.type.to_pandas_dtype())
                          for field, column in zip(METRICS_SCHEMA, columns)})
        self._log.flush()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._log.close()


def read_run_metrics(run) -> pa.Table:
    """The run's per-step metrics, sorted by step."""
    table = metrics_log(run).read()
    return table.sort_by("step")
