"""Shared machinery of every bootstrap in zoo.stats: resample weights, quantiles, intervals.

Why weights and not gathered copies: a resample of n items is fully described by how often each
item was drawn (a row of counts summing to n). A mean over a resample is then one matrix product,
so 10k resamples of a [seeds, examples] matrix cost a couple of GEMMs instead of 10k fancy-index
copies. Draws are made as index matrices first (rng.integers, exactly like a textbook bootstrap)
so a test can pass its own index set in and check the arithmetic by hand.

No scipy at run time (it is a dev dependency only): the normal CDF / inverse CDF for BCa come
from the standard library's NormalDist (and the t quantile of the default interval, which is no
bootstrap, from _student_t).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

from zoo_common.errors import ZooError

METHODS = ("t", "percentile", "bca")  # "t" (the default) is no bootstrap: see _student_t
FEW_SEEDS = 5  # below this many seeds, results say that the seeds are few
# A bootstrap over seeds treats the seeds drawn as the population: below this many it is too narrow
BOOTSTRAP_SEEDS = 20
NAN_POLICIES = ("raise", "omit")
_STANDARD_NORMAL = NormalDist()
# Resamples are processed in chunks so memory stays bounded (chunk x n items of int32 indices).
CHUNK_RESAMPLES = 2048


_NOT_USED = object()  # an option the calling function does not take


def check_options(*, confidence, n_resamples, rng_seed, method=_NOT_USED,
                  nan_policy=_NOT_USED) -> None:
    """Every resampling option checked by value and type: a wrong one must never quietly change
    the numbers (None is not a policy, 1.5 resamples is not a count, no seed is not reproducible)."""
    if (isinstance(confidence, bool) or not isinstance(confidence, numbers.Real)
            or not 0.0 < float(confidence) < 1.0):
        raise ZooError(
            f"confidence must be a number strictly between 0 and 1 (e.g. 0.95), got {confidence!r}"
        )
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, numbers.Integral) or n_resamples < 1:
        raise ZooError(f"n_resamples must be a positive integer (e.g. 10_000), got {n_resamples!r}")
    if isinstance(rng_seed, bool) or not isinstance(rng_seed, numbers.Integral) or rng_seed < 0:
        raise ZooError(f"rng_seed must be a non-negative integer (results are reproducible from "
                       f"it), got {rng_seed!r}")
    if method is not _NOT_USED and method not in METHODS:
        raise ZooError(f"unknown interval method {method!r}; choose one of t (Student-t, the "
                       "default), percentile, bca (bootstrap methods)")
    if nan_policy is not _NOT_USED and nan_policy not in NAN_POLICIES:
        raise ZooError(
            f"unknown nan_policy {nan_policy!r}; choose one of {', '.join(NAN_POLICIES)}"
        )


def real_array(values, what: str) -> np.ndarray:
    """`values` as float64: real numbers only (a complex part or a string is an error, never
    dropped), one rectangular array (ragged rows are an error)."""
    try:
        array = np.asarray(values)
    except ValueError:  # ragged nesting
        raise ZooError(f"{what} must be a rectangular array of numbers (rows of equal length)") from None
    if np.iscomplexobj(array):
        raise ZooError(f"{what} must be real numbers, got complex values")
    try:
        return array.astype(np.float64)
    except (TypeError, ValueError):
        raise ZooError(f"{what} must be numbers, got {array.dtype} values such as "
                       f"{array.ravel()[:3].tolist()}") from None


def integer_steps(steps, what: str) -> np.ndarray:
    """Training steps as int64: whole numbers only (2.5 or NaN is no step; never truncated)."""
    array = np.asarray(steps)
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer)
                                   or np.issubdtype(array.dtype, np.floating)):
        raise ZooError(f"{what}: steps must be whole numbers, got {array.dtype} values")
    if np.issubdtype(array.dtype, np.floating):
        bad = ~np.isfinite(array) | (array != np.round(array))
        if bad.any():
            raise ZooError(f"{what}: steps must be whole numbers, got {array[bad][:5].tolist()}")
    return array.astype(np.int64)


def too_few_seeds_error(n_seeds: int, where: str = "", seeds: Sequence | None = None) -> ZooError:
    """The explanation a researcher needs when asking for spread over one seed."""
    named = f" ({', '.join(map(str, seeds))})" if seeds is not None and len(seeds) else ""
    place = f" {where}" if where else ""
    return ZooError(
        f"an interval over seeds needs at least 2 seeds, got {n_seeds}{named}{place}: it measures "
        "seed-to-seed variation, which a single seed cannot show (the t interval has no standard "
        "deviation over one seed, and a bootstrap resamples whole seeds, so every resample is "
        "that same run). Train or load more seeds, or report the single value without an "
        "interval."
    )


def draw_indices(rng: np.random.Generator, n_resamples: int, n_items: int) -> np.ndarray:
    """[n_resamples, n_items] indices drawn uniformly with replacement (one row per resample)."""
    return rng.integers(0, n_items, size=(n_resamples, n_items), dtype=np.int64)


def counts_from_indices(indices: np.ndarray, n_items: int) -> np.ndarray:
    """How often each item appears in each resample row: [rows, n_items] float64 counts."""
    indices = np.asarray(indices, dtype=np.int64)
    rows = indices.shape[0]
    offsets = (np.arange(rows, dtype=np.int64) * n_items)[:, None]
    flat = np.bincount((indices + offsets).ravel(), minlength=rows * n_items)
    return flat.reshape(rows, n_items).astype(np.float64)


def chunked_counts(rng: np.random.Generator, n_resamples: int, n_items: int):
    """Yield count matrices for n_resamples resamples, CHUNK_RESAMPLES rows at a time."""
    done = 0
    while done < n_resamples:
        size = min(CHUNK_RESAMPLES, n_resamples - done)
        yield counts_from_indices(draw_indices(rng, size, n_items), n_items)
        done += size


def normal_cdf(z: np.ndarray) -> np.ndarray:
    return np.vectorize(_STANDARD_NORMAL.cdf, otypes=[float])(z)


def normal_ppf(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    inside = (p > 0) & (p < 1)
    out[inside] = np.vectorize(_STANDARD_NORMAL.inv_cdf, otypes=[float])(p[inside])
    out[p <= 0] = -np.inf
    out[p >= 1] = np.inf
    return out


def quantile_rows(rows: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row-wise quantile with one level per row (numpy's default 'linear' method)."""
    ordered = np.sort(rows, axis=1)
    n = ordered.shape[1]
    position = np.clip(np.asarray(q, dtype=float), 0.0, 1.0) * (n - 1)
    lower = np.floor(position).astype(np.int64)
    upper = np.minimum(lower + 1, n - 1)
    frac = position - lower
    take = np.arange(ordered.shape[0])
    return ordered[take, lower] * (1 - frac) + ordered[take, upper] * frac


def percentile_interval(boot: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """boot: [rows, n_resamples] -> (low, high) per row."""
    alpha = (1 - confidence) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha], axis=1)
    return low, high


def bca_interval_of_means(
    data: np.ndarray, boot: np.ndarray, confidence: float
) -> tuple[np.ndarray, np.ndarray]:
    """Bias-corrected and accelerated interval (Efron 1987) for the mean of each row of data.

    data: [rows, n] observed values; boot: [rows, n_resamples] bootstrap means. Same formulas as
    scipy.stats.bootstrap(method="BCa"): z0 from the share of resamples below the estimate,
    acceleration from the jackknife. A row whose values are all equal gets the point interval.
    """
    n = data.shape[1]
    estimate = data.mean(axis=1)
    # ties count half, as scipy's percentile-of-score does
    share_below = (
        (boot < estimate[:, None]).mean(axis=1) + (boot <= estimate[:, None]).mean(axis=1)
    ) / 2
    z0 = normal_ppf(share_below)
    jackknife = (data.sum(axis=1, keepdims=True) - data) / (n - 1)
    centred = jackknife.mean(axis=1, keepdims=True) - jackknife
    denominator = 6.0 * (centred**2).sum(axis=1) ** 1.5
    with np.errstate(divide="ignore", invalid="ignore"):
        acceleration = np.where(denominator > 0, (centred**3).sum(axis=1) / denominator, 0.0)
    alpha = (1 - confidence) / 2
    levels = []
    for z_alpha in (normal_ppf(np.array(alpha)), normal_ppf(np.array(1 - alpha))):
        shifted = z0 + z_alpha
        with np.errstate(divide="ignore", invalid="ignore"):
            levels.append(normal_cdf(z0 + shifted / (1 - acceleration * shifted)))
    low = quantile_rows(boot, np.nan_to_num(levels[0], nan=alpha))
    high = quantile_rows(boot, np.nan_to_num(levels[1], nan=1 - alpha))
    constant = np.ptp(data, axis=1) == 0
    low = np.where(constant, estimate, low)
    high = np.where(constant, estimate, high)
    return low, high


def bootstrap_row_means(
    data: np.ndarray, *, confidence: float, n_resamples: int, rng_seed: int, method: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and CI of each row of data [rows, n], resampling the n columns (seeds).

    All rows share the same resampled seed sets, so for a curve (rows = steps, columns = the same
    seeds in the same order) every resample is a coherent set of whole runs.
    """
    _rows, n = data.shape
    scale = power_of_two_scale(data, axis=1)
    data = data / scale
    rng = np.random.default_rng(rng_seed)
    boot = np.concatenate(
        [data @ counts.T / n for counts in chunked_counts(rng, n_resamples, n)], axis=1
    )
    if method == "bca":
        low, high = bca_interval_of_means(data, boot, confidence)
    else:
        low, high = percentile_interval(boot, confidence)
    scale = scale[:, 0]
    return data.mean(axis=1) * scale, low * scale, high * scale


def power_of_two_scale(data: np.ndarray, axis: int | None = None) -> np.ndarray:
    """A power of two within a factor 2 of max |data| (0.5 for all zeros), along `axis` (kept as
    size 1), so the scaled values lie in [-2, 2].

    Why: sums on the way to a mean overflow for values near the float64 limit (3 x 1e308 is inf).
    Dividing by a power of two and multiplying back is exact, so for ordinary values every result
    is unchanged bit for bit, and no intermediate sum can overflow."""
    peak = np.max(np.abs(data), axis=axis, keepdims=axis is not None)
    return np.ldexp(1.0, np.frexp(peak)[1] - 1)  # 2**1024 would be inf
