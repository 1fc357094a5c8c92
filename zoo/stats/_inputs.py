"""Checks and conversions shared by every zoo.stats entry point (options, arrays, seed counts).

Why here: a wrong option must never quietly change the numbers, so every function validates the
same way and says the same thing; the statistics themselves are in _intervals (scipy) and
multi_bootstrap.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from zoo_common.errors import ZooError

METHODS = ("t", "percentile", "bca")  # "t" (the default) is no bootstrap: see _intervals
FEW_SEEDS = 5  # below this many seeds, results say that the seeds are few
# A bootstrap over seeds treats the seeds drawn as the population: below this many it is too narrow
BOOTSTRAP_SEEDS = 20
NAN_POLICIES = ("raise", "omit")

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


def power_of_two_scale(data: np.ndarray, axis: int | None = None) -> np.ndarray:
    """A power of two within a factor 2 of max |data| (0.5 for all zeros), along `axis` (kept as
    size 1), so the scaled values lie in [-2, 2].

    Why: sums on the way to a mean overflow for values near the float64 limit (3 x 1e308 is inf).
    Dividing by a power of two and multiplying back is exact, so for ordinary values every result
    is unchanged bit for bit, and no intermediate sum can overflow."""
    peak = np.max(np.abs(data), axis=axis, keepdims=axis is not None)
    return np.ldexp(1.0, np.frexp(peak)[1] - 1)  # 2**1024 would be inf
