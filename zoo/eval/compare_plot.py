"""The picture of a comparison: per-seed curves, mean with its band, and the difference B - A.

Steps on a symmetric-log axis (linear below 1, log above), so step 0 shows and Pythia's schedule
(0, 1, 2, 4, ..., then every N) spreads evenly. Matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow.compute as pc

from zoo.stats.multi_bootstrap import format_p
from zoo.eval.comparison import Comparison
from zoo_common.figures import save_figure

COLORS = {"a": "#1f77b4", "b": "#d62728"}


def plot_comparison(result: Comparison, path: str | os.PathLike) -> str:
    """Write a PNG of `result` to path (two panels: both arms; the difference) and return path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(8, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.6]}
    )
    t = result.per_step.to_pydict()
    steps = np.asarray(t["step"], dtype=float)
    conf = f"{result.confidence:.0%}"
    bands = result.has_intervals  # one seed in an arm: point values, no band
    for arm, label, seeds in (("a", result.a, result.seeds_a), ("b", result.b, result.seeds_b)):
        rows = result.curves.filter(pc.equal(result.curves.column("arm"), arm))
        for seed in seeds:
            curve = rows.filter(pc.equal(rows.column("seed"), seed)).sort_by("step")
            top.plot(
                curve.column("step").to_numpy(),
                curve.column("value").to_numpy(),
                color=COLORS[arm],
                linewidth=0.7,
                alpha=0.35,
            )
        key = f"{arm}_mean"
        if bands:
            top.fill_between(
                steps, t[f"{arm}_low"], t[f"{arm}_high"], color=COLORS[arm], alpha=0.2, linewidth=0
            )
            how = f"mean of {len(seeds)} seeds, {conf} band; thin: seeds"
        elif len(seeds) == 1:
            how = f"seed {seeds[0]}; 1 seed: no band"
        else:
            how = f"mean of {len(seeds)} seeds; no band: the other arm has one seed"
        top.plot(
            steps,
            t[key],
            color=COLORS[arm],
            linewidth=2.2,
            marker="o",
            markersize=3,
            label=f"{'AB'[arm == 'b']}: {label}  ({how})",
        )
    for point in result.branch_points:  # where the branch left its parent
        for axis in (top, bottom):
            axis.axvline(point, color="0.35", linestyle=":", linewidth=1.2)
        top.annotate(f"branch point (step {point})", (point, 1.0), xycoords=("data", "axes fraction"),
                     xytext=(4, -12), textcoords="offset points", fontsize=8, color="0.3")
    top.set_ylabel(metric_label(result.metric))
    top.set_title(f"{metric_label(result.metric)}: {result.b} vs {result.a}", fontsize=12)
    top.legend(fontsize=8, loc="best")
    top.grid(True, alpha=0.3)
    bottom.axhline(0, color="black", linewidth=0.8)
    if bands:
        bottom.fill_between(
            steps, t["difference_low"], t["difference_high"], color="#555555", alpha=0.25,
            linewidth=0
        )
    bottom.plot(steps, t["difference"], color="#333333", linewidth=1.8, marker="o", markersize=3)
    bottom.axvline(result.at_step, color="#999999", linestyle=":", linewidth=1)
    bottom.set_ylabel("B − A")
    if bands:
        r = result.test
        p = format_p(r.p_value, r.n_resamples, r.alternative)
        title = (f"difference with {conf} interval; at step {result.at_step}: "
                 f"{r.difference:.3g} [{r.difference_low:.3g}, {r.difference_high:.3g}], {p}")
    else:
        title = (f"difference; at step {result.at_step}: {result.value_at(result.at_step)[2]:.3g} "
                 f"(one seed: no interval exists, no test)")
    bottom.set_title(title, fontsize=9)
    bottom.grid(True, alpha=0.3)
    bottom.set_xscale("symlog", linthresh=1)
    bottom.set_xlim(left=0)
    bottom.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    bottom.set_xlabel("step (symlog: linear below 1, log above)")
    fig.tight_layout()
    return save_figure(fig, path)


METRIC_LABELS = {
    "loss": "held-out loss",
    "train_loss": "train loss (the step's batch)",
    "icl": "in-context score",
}


def metric_label(metric: str) -> str:
    """What a metric column measures, for axes and titles ("loss" alone hides which loss)."""
    return METRIC_LABELS.get(metric, metric)
