"""Seed-banded curves of one metric over steps, for one or more models (`zoo plot`).

    curves = [seed_curves(name, "train_loss", smooth=9, store=...) for name in names]
    plot_seed_curves(curves, "train.png")

Per model: the metric's values from zoo.metrics (training metrics such as train_loss at every
training step, evaluated metrics such as loss at the evaluated steps), one curve per seed; the
mean over seeds with its interval (zoo.stats.seed_intervals, Student-t by default) at every step.
smooth=K replaces each seed's curve by a CENTERED moving average over K stored points (points
i - (K-1)//2 .. i + K//2, fewer at the two ends), before the mean and interval are taken: the
steps stay where they are, so a drop is not moved later, as a trailing average would move it.
A model with one seed gets its curve and no band (an interval needs at least 2 seeds).

The picture (plot_seed_curves): steps on a symmetric-log axis as in compare_plot (linear below 1,
log above), thick mean, band, thin per-seed lines; written whole or not at all.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from zoo_common.arguments import whole_number
from zoo_common.errors import ZooError
from zoo.config.names import arm_name
from zoo.eval.compare_plot import metric_label
from zoo.eval.comparison import arm_values, resolve_arm
from zoo.eval.tables import HELDOUT_PREFIX, metrics_table
from zoo.stats import SeedIntervals, seed_intervals
from zoo.store.store import Store
from zoo_common.figures import save_figure

PLOT_EXTRA = "pip install 'model-zoo[plot]'"
_INTERVAL_WORDS = {"t": "t", "percentile": "percentile bootstrap", "bca": "BCa bootstrap"}


@dataclass(frozen=True, eq=False)
class SeedCurves:
    """One model's curves: `curves` has columns seed, step, value (smoothed when smooth > 1),
    sorted by seed then step; `intervals` the per-step mean and band over seeds (None with one
    seed)."""

    name: str
    metric: str
    seeds: tuple[int, ...]
    curves: pa.Table
    intervals: SeedIntervals | None
    smooth: int

    def curve(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of one seed."""
        rows = self.curves.filter(pc.equal(self.curves.column("seed"), seed))
        return rows.column("step").to_numpy(), rows.column("value").to_numpy()


def moving_average(values, k: int) -> np.ndarray:
    """Centered moving average over k points (i - (k-1)//2 .. i + k//2), fewer at the ends; a NaN
    spreads only to the windows that hold it (never skipped: it marks a diverged run)."""
    values = np.asarray(values, dtype=np.float64)
    k = whole_number(k, "smooth", minimum=1)
    if k == 1 or len(values) == 0:
        return values.copy()
    before, after = (k - 1) // 2, k // 2
    pad = (np.zeros(before), np.zeros(after))
    kernel = np.ones(k)
    sums = np.convolve(np.concatenate([pad[0], values, pad[1]]), kernel, mode="valid")
    counts = np.convolve(np.concatenate([pad[0], np.ones(len(values)), pad[1]]), kernel,
                         mode="valid")
    return sums / counts


def _check_one_heldout_set(family: str, size: str, metric: str, name: str, store: Store) -> None:
    """A mean over seeds of values measured on different held-out sets means nothing: refused."""
    table = metrics_table(family, store=store, sizes=[size])
    column = HELDOUT_PREFIX + metric
    if column not in table.column_names:
        return
    sets = set(table.column(column).drop_null().to_pylist())
    if len(sets) > 1:
        raise ZooError(
            f"{name}: its {metric} values were measured on {len(sets)} different held-out sets; "
            f"evaluate every run with one setting first (zoo eval {family} --metric {metric} "
            "--force, with the same --heldout / --heldout-samples)"
        )


def seed_curves(
    name: str,
    metric: str,
    *,
    store: str | Store | None = None,
    smooth: int = 1,
    confidence: float = 0.95,
    method: str = "t",
) -> SeedCurves:
    """The per-seed curves of `metric` (a column of zoo.metrics) for model `name` (or a one-size
    family), smoothed per seed when smooth > 1, with the mean and interval over seeds per step."""
    from zoo.store.catalog import open_store

    smooth = whole_number(smooth, "smooth", minimum=1)
    store = open_store(store)
    family, size = resolve_arm(name, store)
    rows = arm_values(family, size, metric, store).sort_by(
        [("seed", "ascending"), ("step", "ascending")]
    )
    _check_one_heldout_set(family, size, metric, name, store)
    seeds = rows.column("seed").to_numpy()
    values = rows.column("value").to_numpy(zero_copy_only=False).astype(np.float64)
    unique = sorted(set(seeds.tolist()))
    if not unique:
        raise ZooError(f"{name} has no {metric} values yet")
    if smooth > 1:
        values = values.copy()
        for seed in unique:
            mine = seeds == seed
            values[mine] = moving_average(values[mine], smooth)
    curves = pa.table({"seed": rows.column("seed"), "step": rows.column("step"),
                       "value": pa.array(values, pa.float64())})
    intervals = None
    if len(unique) > 1:
        try:
            intervals = seed_intervals(curves, confidence=confidence, method=method)
        except ZooError as error:
            raise ZooError(f"{name}: {error}") from None
    return SeedCurves(arm_name(family, size), metric, tuple(unique), curves, intervals, smooth)


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display); one clear error without the extra."""
    try:
        import matplotlib
    except ImportError:
        raise ZooError(f"drawing a plot needs matplotlib, the `plot` extra: {PLOT_EXTRA}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def check_png_path(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise ZooError(f"the plot is a PNG: name a .png file to write, got {path!r}")
    return path


def plot_seed_curves(curves: Sequence[SeedCurves], path: str | os.PathLike) -> str:
    """Write a PNG of the models' curves to path, atomically; return path. One metric: one panel;
    several: one panel per metric (in the order first given), the models side by side in each."""
    path = check_png_path(path)
    if not curves:
        raise ZooError("nothing to plot: give at least one model's curves")
    metrics = list(dict.fromkeys(c.metric for c in curves))
    drawn = [(c.name, c.metric, c.smooth) for c in curves]
    twice = sorted({name for name, metric, smooth in drawn if drawn.count((name, metric, smooth)) > 1})
    if twice:
        raise ZooError(f"the same model twice (by two names, or one name given twice): "
                       f"{', '.join(twice)}")
    plt = pyplot()
    columns = min(len(metrics), 2)
    rows = -(-len(metrics) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(8 * columns, 5 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        _draw_panel(plt, ax, [c for c in curves if c.metric == metric], metric)
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    fig.tight_layout()
    return save_figure(fig, path)


def _draw_panel(plt, ax, curves: Sequence[SeedCurves], metric: str) -> None:
    """One metric: per model its seeds (thin), mean (thick) and band, on a symlog step axis."""
    import matplotlib.ticker

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, model in enumerate(curves):
        color = colors[k % len(colors)]
        for seed in model.seeds:
            ax.plot(*model.curve(seed), color=color, linewidth=0.7, alpha=0.35)
        r = model.intervals
        if r is None:
            steps, values = model.curve(model.seeds[0])
            ax.plot(steps, values, color=color, linewidth=2.2,
                    label=f"{model.name}  (seed {model.seeds[0]}; 1 seed: no band)")
            continue
        steps = r.steps.astype(float)
        ax.fill_between(steps, r.lows, r.highs, color=color, alpha=0.2, linewidth=0)
        ax.plot(steps, r.means, color=color, linewidth=2.2, label=(
            f"{model.name}  (mean of {len(model.seeds)} seeds, {r.confidence:.0%} "
            f"{_INTERVAL_WORDS[r.method]} band; thin: seeds)"))
    label = metric_label(metric)
    smooth = sorted({c.smooth for c in curves} - {1})
    how = (f"\neach seed smoothed first: centered moving average over "
           f"{' / '.join(map(str, smooth))} stored points" if smooth else "")
    ax.set_title(f"{label} over steps{how}", fontsize=11)
    ax.set_ylabel(label)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=0)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_xlabel("step (symlog: linear below 1, log above)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
