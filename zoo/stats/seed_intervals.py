"""Mean and confidence interval over seeds: for one step, or for every step of a curve at once.

The unit is the seed (a whole training run), because the question is "how much would this number
move if we had trained other runs?" (MultiBERTs, PolyPythias). The default interval is Student's t
(mean +- t * sd / sqrt(n)), because a bootstrap over 3-10 seeds treats the seeds we happened to
draw as the whole population and is too narrow; percentile and BCa bootstrap intervals are there
on request (method=). All three come from scipy (_intervals). Examples inside a run are not
resampled here; for that, use multi_bootstrap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from zoo.stats._inputs import (
    BOOTSTRAP_SEEDS,
    FEW_SEEDS,
    check_options,
    integer_steps,
    real_array,
    too_few_seeds_error,
)
from zoo.stats._intervals import row_intervals
from zoo_common.errors import ZooError

_SHOWN = 10  # how many offending (step, seed) pairs an error message lists
_METHOD_WORDS = {"t": "t interval", "percentile": "percentile bootstrap interval",
                 "bca": "BCa bootstrap interval"}


def few_seeds_note(n_seeds: int, method: str) -> str:
    """What a reader of an interval over n_seeds seeds should know ("" when nothing)."""
    if method == "t":
        if n_seeds >= FEW_SEEDS:
            return ""
        return (f"only {n_seeds} seeds (fewer than {FEW_SEEDS}): the t interval is wide and holds "
                "only if the seed-to-seed variation is roughly normal, which so few seeds cannot "
                "show; train more seeds for a firmer interval")
    if n_seeds >= BOOTSTRAP_SEEDS:
        return ""
    return (f"only {n_seeds} seeds (fewer than {BOOTSTRAP_SEEDS}): a bootstrap interval over so "
            "few seeds is too narrow (it covers the true mean less often than its stated "
            "level); method='t', the default, is not")


@dataclass(frozen=True)
class SeedInterval:
    """Mean over seeds with its interval; omitted_seeds lists seeds left out for NaN.

    n_resamples and rng_seed are what was asked; the t interval (method "t") uses neither.
    """

    mean: float
    low: float
    high: float
    n_seeds: int
    confidence: float
    method: str
    n_resamples: int
    rng_seed: int
    omitted_seeds: tuple = ()

    @property
    def few_seeds(self) -> bool:
        """True below FEW_SEEDS seeds, where any interval over seeds is shaky."""
        return self.n_seeds < FEW_SEEDS

    @property
    def note(self) -> str:
        """In words, what the seed count means for this interval ("" when nothing)."""
        return few_seeds_note(self.n_seeds, self.method)

    def format(self) -> str:
        """One line: the mean, the interval, how it was made, over how many seeds, and the note."""
        omitted = (f"; left out for NaN: seed(s) {', '.join(map(str, self.omitted_seeds))}"
                   if self.omitted_seeds else "")
        note = f"; {self.note}" if self.note else ""
        return (f"{self.mean:.4g} [{self.low:.4g}, {self.high:.4g}] (mean over {self.n_seeds} "
                f"seeds, {self.confidence:.0%} {_METHOD_WORDS[self.method]}{omitted}){note}")

    __str__ = format


@dataclass(frozen=True, eq=False)
class SeedIntervals:
    """Per-step mean and interval over seeds (arrays aligned with steps, ascending)."""

    steps: np.ndarray
    means: np.ndarray
    lows: np.ndarray
    highs: np.ndarray
    n_seeds: np.ndarray
    confidence: float
    method: str
    n_resamples: int
    rng_seed: int
    omitted: tuple = ()  # (step, seed) pairs left out under nan_policy="omit"

    @property
    def few_seeds(self) -> bool:
        """True when some step has fewer than FEW_SEEDS seeds."""
        return bool(len(self.n_seeds)) and int(np.min(self.n_seeds)) < FEW_SEEDS

    @property
    def note(self) -> str:
        """In words, what the fewest seeds at any step mean for these intervals ("" if nothing)."""
        if not len(self.n_seeds):
            return ""
        fewest = int(np.min(self.n_seeds))
        note = few_seeds_note(fewest, self.method)
        if not note or fewest == int(np.max(self.n_seeds)):
            return note
        at = self.steps[self.n_seeds == fewest].tolist()
        shown = ", ".join(map(str, at[:_SHOWN])) + (" ..." if len(at) > _SHOWN else "")
        return f"at step(s) {shown}: {note}"

    def to_arrow(self):
        """The same numbers as a pyarrow Table (columns step, mean, low, high, n_seeds)."""
        import pyarrow as pa

        return pa.table(
            {
                "step": self.steps,
                "mean": self.means,
                "low": self.lows,
                "high": self.highs,
                "n_seeds": self.n_seeds,
            }
        )


def _describe(pairs: Sequence[tuple]) -> str:
    shown = ", ".join(" ".join(f"{k} {v}" for k, v in pair) for pair in pairs[:_SHOWN])
    more = f" and {len(pairs) - _SHOWN} more" if len(pairs) > _SHOWN else ""
    return shown + more


def _non_finite_error(pairs: Sequence[tuple]) -> ZooError:
    return ZooError(
        f"{len(pairs)} value(s) are NaN, infinite or missing ({_describe(pairs)}); a NaN usually means a "
        "diverged run or a failed evaluation, and dropping it silently would bias the mean toward "
        "the runs that worked. Fix or remove those values, or pass nan_policy='omit' to leave them "
        "out (the result then lists what was omitted)."
    )


def seed_interval(
    values: Sequence[float] | Mapping[Any, float] | np.ndarray,
    *,
    seeds: Sequence | None = None,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    rng_seed: int = 0,
    method: str = "t",
    nan_policy: str = "raise",
) -> SeedInterval:
    """Mean over seeds of one number (e.g. the loss at one step) with a confidence interval.

    values: one number per seed, or a mapping seed -> number. seeds: labels for error messages
    and for omitted_seeds (default: positions). method: "t" (Student's t, which keeps its coverage
    at a handful of seeds), or the bootstraps "percentile" and "bca" (scipy.stats.bootstrap,
    reproducible from rng_seed). The result says when seeds are few.
    """
    check_options(confidence=confidence, n_resamples=n_resamples, rng_seed=rng_seed,
                  method=method, nan_policy=nan_policy)
    if isinstance(values, Mapping):
        seeds = list(values.keys()) if seeds is None else seeds
        values = list(values.values())
    data = real_array(values, "seed_interval values")
    if data.ndim != 1:
        raise ZooError(
            f"seed_interval takes one number per seed (a 1-D array), got shape "
            f"{data.shape}; for many steps at once use seed_intervals"
        )
    labels = list(range(len(data))) if seeds is None else list(seeds)
    if len(labels) != len(data):
        raise ZooError(f"got {len(data)} values but {len(labels)} seed labels; give one per value")
    bad = ~np.isfinite(data)
    omitted: tuple = ()
    if bad.any():
        pairs = [(("seed", labels[i]),) for i in np.flatnonzero(bad)]
        if nan_policy == "raise":
            raise _non_finite_error(pairs)
        omitted = tuple(labels[i] for i in np.flatnonzero(bad))
        data = data[~bad]
        labels = [label for label, b in zip(labels, bad) if not b]
    if len(data) < 2:
        after = f"after omitting NaN seeds {list(omitted)}" if omitted else ""
        raise too_few_seeds_error(len(data), after, labels)
    mean, low, high = row_intervals(
        data[None, :],
        confidence=confidence,
        n_resamples=n_resamples,
        rng_seed=rng_seed,
        method=method,
    )
    return SeedInterval(
        mean=float(mean[0]),
        low=float(low[0]),
        high=float(high[0]),
        n_seeds=len(data),
        confidence=confidence,
        method=method,
        n_resamples=n_resamples,
        rng_seed=rng_seed,
        omitted_seeds=omitted,
    )


def _missing(table: Any, name: str) -> np.ndarray | None:
    """Null entries of a column (pyarrow nulls, None in a list or object array); None if none."""
    column = table.column(name) if hasattr(table, "column_names") else table[name]
    if hasattr(column, "is_null"):  # pyarrow: the metric was not measured in that row
        return np.asarray(column.is_null().to_numpy(zero_copy_only=False)) if column.null_count else None
    array = np.asarray(column)
    if array.dtype == object:
        mask = np.fromiter((v is None for v in array.ravel()), dtype=bool, count=array.size)
        return mask if mask.any() else None
    return None


def _column(table: Any, name: str) -> np.ndarray:
    if hasattr(table, "column_names"):  # pyarrow
        names = list(table.column_names)
    elif isinstance(table, Mapping):
        names = list(table.keys())
    elif hasattr(table, "columns"):  # pandas
        names = list(table.columns)
    else:
        raise ZooError(
            f"expected a pyarrow Table, a pandas DataFrame or a dict of arrays, got "
            f"{type(table).__name__}"
        )
    if name not in names:
        raise ZooError(
            f"no column {name!r} in the table; columns are: {', '.join(map(str, names))}"
        )
    column = table.column(name) if hasattr(table, "column_names") else table[name]
    return np.asarray(column.to_numpy() if hasattr(column, "to_numpy") else column)


def seed_intervals(
    table: Any,
    *,
    value: str = "value",
    step: str = "step",
    seed: str = "seed",
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    rng_seed: int = 0,
    method: str = "t",
    nan_policy: str = "raise",
) -> SeedIntervals:
    """Per-step mean and interval over seeds for a long table of (step, seed, value) rows.

    table: a pyarrow Table, a pandas DataFrame, or a mapping of column name -> array, such as
    `zoo.metrics(family)` filtered to one size. Steps at which the value is null for every seed
    (a metric not evaluated there) are left out; a null or NaN for some seeds of a step is an
    error unless nan_policy="omit". method: as in seed_interval. With a bootstrap method, steps
    with the same number of seeds share the same resampled seed sets (seeds sorted within each
    step), so the band of a curve is made of coherent whole-run resamples.
    """
    check_options(confidence=confidence, n_resamples=n_resamples, rng_seed=rng_seed,
                  method=method, nan_policy=nan_policy)
    steps, seeds = integer_steps(_column(table, step), "seed_intervals"), _column(table, seed)
    values = _column(table, value)
    lengths = {step: len(steps), seed: len(seeds), value: len(values)}
    if len(set(lengths.values())) > 1 or steps.ndim != 1 or values.ndim != 1:
        raise ZooError(f"the table's columns must be 1-D and of equal length; got "
                       f"{', '.join(f'{k}: {n}' for k, n in lengths.items())}")
    missing = _missing(table, value)
    if missing is not None:
        # A step where no run has a value was not measured (zoo.metrics joins training and
        # evaluation rows, so an eval metric is null at every step that was not evaluated): left
        # out. A step where some runs have a value and others not is a gap: reported like NaN.
        measured_steps = np.unique(steps[~missing])
        keep = ~missing | np.isin(steps, measured_steps)
        if not keep.any():
            raise ZooError(f"column {value!r} holds no values (every row is null)")
        steps, seeds = steps[keep], seeds[keep]
        values = np.where(missing[keep], np.nan, values[keep])
    values = real_array(values, f"column {value!r}")
    if len(values) == 0:
        raise ZooError("the table is empty: no (step, seed, value) rows to summarise")
    order = np.lexsort((seeds, steps))
    steps, seeds, values = steps[order], seeds[order], values[order]
    same = (steps[1:] == steps[:-1]) & (seeds[1:] == seeds[:-1])
    if same.any():
        pairs = [(("step", steps[i]), ("seed", seeds[i])) for i in np.flatnonzero(same)]
        raise ZooError(
            f"{len(pairs)} duplicate (step, seed) rows ({_describe(pairs)}); each run "
            "must contribute one value per step — aggregate or deduplicate first"
        )
    bad = ~np.isfinite(values)
    omitted: tuple = ()
    if bad.any():
        pairs = [(("step", steps[i]), ("seed", seeds[i])) for i in np.flatnonzero(bad)]
        if nan_policy == "raise":
            raise _non_finite_error(pairs)
        omitted = tuple((steps[i].item(), seeds[i].item()) for i in np.flatnonzero(bad))
        steps, seeds, values = steps[~bad], seeds[~bad], values[~bad]
    unique_steps, starts, counts = np.unique(steps, return_index=True, return_counts=True)
    if (counts < 2).any():
        lonely = [s.item() for s in unique_steps[counts < 2]]
        raise too_few_seeds_error(int(counts.min()), f"at step(s) {lonely[:_SHOWN]}")
    means, lows, highs = (np.empty(len(unique_steps)) for _ in range(3))
    for n in np.unique(counts):
        rows = np.flatnonzero(counts == n)
        data = values[starts[rows][:, None] + np.arange(n)[None, :]]
        mean, low, high = row_intervals(
            data, confidence=confidence, n_resamples=n_resamples, rng_seed=rng_seed, method=method
        )
        means[rows], lows[rows], highs[rows] = mean, low, high
    return SeedIntervals(
        steps=unique_steps,
        means=means,
        lows=lows,
        highs=highs,
        n_seeds=counts,
        confidence=confidence,
        method=method,
        n_resamples=n_resamples,
        rng_seed=rng_seed,
        omitted=omitted,
    )
