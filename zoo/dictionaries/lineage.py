"""Features over training: match each dictionary's features to the previous step's, and follow
every feature's lineage — the step it appears, the step it vanishes, its similarity on the way.

Consecutive dictionaries are matched by the cosine of their decoder directions with an optimal
assignment (scipy's linear_sum_assignment, the Hungarian method) of the cosines at or above
`threshold`, among the features that are alive (active on some of the dictionary's
activations); a pair below `threshold` is no match.
A feature matched to one at the previous step continues its lineage; an unmatched one is born; a
lineage whose feature finds no match has gone.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from zoo_common.errors import ArgumentError

DEFAULT_THRESHOLD = 0.7
SCHEMA = pa.schema([("step", pa.int64()), ("feature", pa.int64()), ("lineage", pa.int64()),
                    ("born", pa.int64()), ("cosine", pa.float64()), ("density", pa.float64())])


def unit_rows(matrix) -> np.ndarray:
    rows = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 1e-12, norms, 1.0)


def track(steps: list[int], decoders: list, densities: list, *,
          threshold: float = DEFAULT_THRESHOLD) -> pa.Table:
    """One row per alive feature per step: its lineage id, the step that lineage was born, its
    cosine with its predecessor (NaN when born here) and its activation density."""
    from scipy.optimize import linear_sum_assignment

    if not (len(steps) == len(decoders) == len(densities)) or not steps:
        raise ArgumentError("track needs one decoder and one density per step, at least one step")
    if sorted(steps) != list(steps) or len(set(steps)) != len(steps):
        raise ArgumentError(f"steps must be ascending and distinct, got {steps}")
    if not 0 < threshold <= 1:
        raise ArgumentError(f"threshold is a cosine in (0, 1], got {threshold}")
    columns = {name: [] for name in SCHEMA.names}
    previous = None  # (alive feature ids, unit directions, lineage ids, born steps)
    next_lineage = 0
    for step, decoder, density in zip(steps, decoders, densities):
        density = np.asarray(density, dtype=np.float64)
        alive = np.flatnonzero(density > 0)
        directions = unit_rows(np.asarray(decoder)[alive])
        lineage = np.full(len(alive), -1, dtype=np.int64)
        born = np.full(len(alive), step, dtype=np.int64)
        cosine = np.full(len(alive), np.nan)
        if previous is not None and len(alive) and len(previous[0]):
            similarity = directions @ previous[1].T
            # pairs below the threshold count as nothing: else the assignment would trade a true
            # match for avoiding a strongly negative one elsewhere
            rows, cols = linear_sum_assignment(-np.where(similarity >= threshold, similarity, 0.0))
            keep = similarity[rows, cols] >= threshold
            lineage[rows[keep]] = previous[2][cols[keep]]
            born[rows[keep]] = previous[3][cols[keep]]
            cosine[rows[keep]] = similarity[rows[keep], cols[keep]]
        for i in np.flatnonzero(lineage < 0):
            lineage[i], next_lineage = next_lineage, next_lineage + 1
        columns["step"] += [step] * len(alive)
        columns["feature"] += alive.tolist()
        columns["lineage"] += lineage.tolist()
        columns["born"] += born.tolist()
        columns["cosine"] += cosine.tolist()
        columns["density"] += density[alive].tolist()
        previous = (alive, directions, lineage, born)
    return pa.table(columns, schema=SCHEMA)


def per_step_counts(table: pa.Table) -> list[dict]:
    """Per step: features alive, born there, and lineages gone since the step before."""
    steps = sorted(set(table.column("step").to_pylist()))
    by_step = {s: set() for s in steps}
    born = {s: 0 for s in steps}
    for step, lineage, first in zip(table.column("step").to_pylist(),
                                    table.column("lineage").to_pylist(),
                                    table.column("born").to_pylist()):
        by_step[step].add(lineage)
        born[step] += first == step
    out, before = [], set()
    for step in steps:
        out.append({"step": step, "alive": len(by_step[step]), "born": born[step],
                    "gone": len(before - by_step[step])})
        before = by_step[step]
    return out


def plot_counts(counts: list[dict], path: str, *, title: str) -> str:
    """Features alive, born and gone per step, as a PNG (matplotlib, the `plot` extra)."""
    from zoo.eval.seed_plot import pyplot

    plt = pyplot()
    steps = [c["step"] for c in counts]
    figure, axis = plt.subplots(figsize=(9, 4.5), dpi=110)
    axis.plot(steps, [c["alive"] for c in counts], "-o", color="#1f77b4", ms=3, label="alive")
    axis.bar(steps, [c["born"] for c in counts], width=_bar_width(steps), color="#2ca02c",
             alpha=0.6, label="born")
    axis.bar(steps, [-c["gone"] for c in counts], width=_bar_width(steps), color="#d62728",
             alpha=0.6, label="gone (below 0)")
    axis.axhline(0, color="black", lw=0.8)
    axis.set_xlabel("training step")
    axis.set_ylabel("dictionary features")
    axis.set_title(title, fontsize=10)
    axis.legend(loc="upper left", fontsize=8, frameon=False)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    from zoo_common.figures import save_figure

    return save_figure(figure, path, dpi=110)


def _bar_width(steps: list[int]) -> float:
    return 0.6 * min(np.diff(steps)) if len(steps) > 1 else 1.0
