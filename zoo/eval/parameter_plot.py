"""One measure against a parameter of the data, over seeds (`zoo plot FAMILY --by PARAM`).

    points = parameter_points("superposition", "superposition.represented", "sparsity", store=...)
    plot_by_parameter(points, "represented.png")

For every size of the family whose data source is a feature source (data_index.features:
`builtin:sparse_features?n=..&sparsity=..&importance=..`, read from each run's run.json), the
measure at each seed's last evaluated step; the mean over seeds with its interval
(zoo.stats.seed_interval, Student-t by default) and every seed's own value. `by` is one of the
source's parameters (sparsity, importance, n) or m, the hidden width; sizes that share the other
parameters form one line. Sparsity is drawn on a log scale of 1 - sparsity (the density), sparser
to the right, labelled with the sparsity values; the picture is written whole or not at all.
"""
from __future__ import annotations

import itertools
import math
import os
import re
from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc

from data_index.features import FeatureRecipe, is_feature_source
from zoo.config.names import arm_name
from zoo.eval.compare_plot import metric_label
from zoo.eval.evaluate import family_runs
from zoo.eval.seed_plot import check_png_path, pyplot
from zoo.eval.tables import metrics_table
from zoo.stats import SeedInterval, seed_interval
from zoo.store.store import Store
from zoo_common.errors import ArgumentError, InvalidInputError, ZooError
from zoo_common.figures import save_figure

PARAMETERS = {"sparsity": "the probability that a feature is 0", "importance":
              "feature i weighs importance**i", "n": "the number of features",
              "m": "the hidden width"}
_INTERVAL_WORDS = {"t": "t", "percentile": "percentile bootstrap", "bca": "BCa bootstrap"}


@dataclass(frozen=True)
class ParameterPoint:
    """One size: its parameters, every seed's value at its last evaluated step, and their mean
    with its interval (None with one seed)."""

    size: str
    parameters: dict
    seeds: tuple[int, ...]
    steps: tuple[int, ...]
    values: tuple[float, ...]
    interval: SeedInterval | None

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))


@dataclass(frozen=True)
class ParameterPoints:
    family: str
    metric: str
    by: str
    points: tuple[ParameterPoint, ...]
    skipped: tuple[str, ...]  # "size (why)": no feature source, or the measure not evaluated

    def groups(self) -> dict[str, list[ParameterPoint]]:
        """Sizes that share every parameter but `by`, ordered by `by`: label -> points."""
        out: dict[str, list[ParameterPoint]] = {}
        for point in sorted(self.points, key=lambda p: (self.group_label(p), p.parameters[self.by])):
            out.setdefault(self.group_label(point), []).append(point)
        return out

    def group_label(self, point: ParameterPoint) -> str:
        return ", ".join(f"{k}={point.parameters[k]:g}" for k in ("n", "m", "sparsity", "importance")
                         if k != self.by)


def check_by(by: str) -> str:
    if by not in PARAMETERS:
        raise ArgumentError(f"unknown --by {by!r}: choose one of "
                            + "; ".join(f"{k} ({v})" for k, v in PARAMETERS.items()))
    return by


def _parameters(run) -> dict | None:
    """n, m, sparsity, importance of a run from its run.json; None when its data are no features."""
    config = run.read_json("run.json")["config"]
    source = (config.get("data") or {}).get("source") or (config.get("size") or {}).get("source")
    if not isinstance(source, str) or not is_feature_source(source):
        return None
    try:
        recipe = FeatureRecipe.parse(source)
    except InvalidInputError as error:
        raise ZooError(f"{run.run_id}: its data source in run.json: {error}") from None
    return {"n": recipe.n, "m": config["size"]["width"], "sparsity": recipe.sparsity,
            "importance": recipe.importance}


def parameter_points(family: str, metric: str, by: str, *, store: str | Store | None = None,
                     confidence: float = 0.95, method: str = "t") -> ParameterPoints:
    """`metric` (a column of zoo.metrics(family)) at each seed's last evaluated step, for every
    size of `family` drawn from a feature source, with its parameters and the interval over
    seeds."""
    from zoo.store.catalog import open_store

    check_by(by)
    store = open_store(store)
    runs = family_runs(store, family)
    by_size: dict[str, dict] = {}
    sources: set[str] = set()
    for run_id in runs:
        found = _parameters(store.run(run_id))
        if found is None:
            sources.add(store.run(run_id).read_json("run.json")["config"]["data"]["source"])
            continue
        if by_size.setdefault(run_id.size, found) != found:
            raise ZooError(f"{arm_name(family, run_id.size)}: its seeds were trained on different data "
                           f"({by_size[run_id.size]} and {found}); one size, one data source")
    if not by_size:
        raise ArgumentError(f"no size of family {family} draws its data from builtin:"
                            f"sparse_features, which has the parameter {by!r}; its sources: "
                            f"{', '.join(sorted(sources))}")
    table = metrics_table(family, store=store, sizes=sorted(by_size))
    if metric not in table.column_names:
        fields = [c for c in table.column_names if c.startswith(metric + ".")]
        if fields:
            raise ArgumentError(f"{metric} has one value per field; choose one column: "
                                f"{columns_in_words(fields)}")
        columns = [c for c in table.column_names if c not in ("family", "size", "seed", "step")]
        raise ArgumentError(f"no column {metric!r} in {family}'s metrics{_eval_hint(family, metric)}"
                            f"; columns: {columns_in_words(columns)}")
    table = table.filter(pc.is_valid(table.column(metric))).select(["size", "seed", "step", metric])
    rows = table.to_pandas()
    points, skipped = [], [f"{s} (data: no feature source)" for s in sorted(
        {r.size for r in runs} - set(by_size))]
    for size, parameters in sorted(by_size.items()):
        mine = rows[rows["size"] == size]
        if mine.empty:
            skipped.append(f"{size} (no {metric} values)")
            continue
        last = mine.sort_values("step").groupby("seed").tail(1).sort_values("seed")
        seeds = tuple(int(s) for s in last.seed)
        values = tuple(float(v) for v in last[metric])
        interval = None
        if len(seeds) >= 2:
            try:
                interval = seed_interval(values, seeds=seeds, confidence=confidence, method=method)
            except ZooError as error:
                raise ZooError(f"{arm_name(family, size)}: {error}") from None
        points.append(ParameterPoint(size, parameters, seeds, tuple(int(s) for s in last.step),
                                     values, interval))
    if not points:
        raise ArgumentError(f"{metric} has no values for any size of {family} drawn from "
                            f"features{_eval_hint(family, metric)}")
    return ParameterPoints(family, metric, by, tuple(points), tuple(skipped))


def _eval_hint(family: str, metric: str) -> str:
    from zoo.eval.metrics import METRICS

    name = metric.split(".")[0]
    return f" (not evaluated? run `zoo eval {family} --metric {name}` first)" if name in METRICS else ""


def columns_in_words(columns: list[str]) -> str:
    """Column names, with numbered runs (norm_0, norm_1, ...) written once: norm_0..19."""
    numbered: dict[str, list[int]] = {}
    words: list[str] = []
    for column in columns:
        match = re.fullmatch(r"(.*_)(\d+)", column)
        if match:
            if match[1] not in numbered:
                words.append(match[1])
            numbered.setdefault(match[1], []).append(int(match[2]))
        else:
            words.append(column)
    def word(w: str) -> str:
        if w not in numbered:
            return w
        found = numbered[w]
        return f"{w}{found[0]}" if len(found) == 1 else f"{w}{min(found)}..{max(found)}"

    return ", ".join(map(word, words))


def _x(by: str, value: float) -> float:
    return 1.0 - value if by == "sparsity" else value


def plot_by_parameter(points: ParameterPoints, path: str | os.PathLike) -> str:
    """Write the PNG (one line per group, mean with its interval, a dot per seed) to path,
    atomically; return path."""
    path = check_png_path(path)
    plt = pyplot()
    by = points.by
    fig, ax = plt.subplots(figsize=(8.5, 5.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    groups = points.groups()
    sharing: dict[float, list[str]] = {}  # x -> the groups with a point there, drawn side by side
    for label, members in groups.items():
        for p in members:
            sharing.setdefault(p.parameters[by], []).append(label)
    spread = 0.022  # a size's seeds, side by side

    def moved(value: float, shift: float) -> float:  # shift: in log10 units for sparsity
        x = _x(by, value)
        return x * 10**shift if by == "sparsity" else x + shift * _span(points)

    for k, (label, members) in enumerate(groups.items()):
        colour = colours[k % len(colours)]
        xs_drawn = []
        for p in members:
            near = sharing[p.parameters[by]]
            xs_drawn.append(moved(p.parameters[by], 0.07 * (near.index(label) - (len(near) - 1) / 2)))
        means = np.array([p.mean for p in members])
        ax.plot(xs_drawn, means, "-o", color=colour, linewidth=2, markersize=6, label=label,
                zorder=4)
        for x, p in zip(xs_drawn, members):
            if p.interval is not None:
                ax.plot([x, x], [p.interval.low, p.interval.high], color=colour, linewidth=1.2)
                ax.plot([x], [p.interval.low], "_", [x], [p.interval.high], "_", color=colour,
                        markersize=9)
            dots = np.linspace(-spread, spread, len(p.values)) if len(p.values) > 1 else [0.0]
            dx = [x * 10**d if by == "sparsity" else x + d * _span(points) for d in dots]
            ax.scatter(dx, p.values, s=16, facecolor="white", edgecolor=colour, linewidth=1,
                       zorder=3)
    ax.scatter([], [], s=16, facecolor="white", edgecolor="#444", label="one seed")
    _x_axis(ax, points)
    n_seeds = sorted({len(p.seeds) for p in points.points})
    interval = next((p.interval for p in points.points if p.interval is not None), None)
    how = (f"mean over {'/'.join(map(str, n_seeds))} seeds, {interval.confidence:.0%} "
           f"{_INTERVAL_WORDS[interval.method]} interval" if interval else "one seed: no interval")
    steps = sorted({s for p in points.points for s in p.steps})
    at = f"step {steps[0]:,}" if len(steps) == 1 else f"steps {steps[0]:,}..{steps[-1]:,}"
    ax.set_title(f"{points.family}: {metric_label(points.metric)} against {by}\n"
                 f"each seed's last evaluated step ({at}); {how}", fontsize=11)
    ax.set_ylabel(metric_label(points.metric))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return save_figure(fig, path)


def _span(points: ParameterPoints) -> float:
    values = [p.parameters[points.by] for p in points.points]
    return (max(values) - min(values)) or 1.0


def _x_axis(ax, points: ParameterPoints) -> None:
    by = points.by
    values = sorted({p.parameters[by] for p in points.points})
    ticks = [_x(by, v) for v in values]
    if by == "sparsity":
        ax.set_xscale("log")
        ax.invert_xaxis()  # 1 - sparsity falls to the right: sparser to the right
        ax.minorticks_off()
        ax.set_xlabel("sparsity S (log scale of the density 1 \u2212 S; sparser \u2192)")
        low, high = min(ticks), max(ticks)
        ax.set_xlim(high * 10**0.15, low / 10**0.15)
    else:
        ax.set_xlabel(f"{by} ({PARAMETERS[by]})")
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{v:g}" for v in values])
    if by != "sparsity" and len(ticks) > 1:
        pad = 0.06 * (max(ticks) - min(ticks))
        ax.set_xlim(min(ticks) - pad, max(ticks) + pad)
    if any(math.isclose(a, b, rel_tol=0.08) for a, b in itertools.pairwise(ticks)):
        for label in ax.get_xticklabels():
            label.set_rotation(45)


def summary(points: ParameterPoints) -> list[str]:
    """One line per size: its parameters, the mean with its interval, the seeds and steps."""
    lines = []
    for label, members in points.groups().items():
        for p in members:
            r = p.interval
            value = (f"{r.mean:.4g} [{r.low:.4g}, {r.high:.4g}]" if r else f"{p.mean:.4g}")
            seeds = ", ".join(f"{s}: {v:.4g}" for s, v in zip(p.seeds, p.values))
            lines.append(f"{arm_name(points.family, p.size)} ({label}): {points.by}={p.parameters[points.by]:g}"
                         f"  {points.metric} {value}  (seeds {seeds}; step "
                         f"{'/'.join(str(s) for s in sorted(set(p.steps)))})")
    lines += [f"skipped: {s}" for s in points.skipped]
    return lines
