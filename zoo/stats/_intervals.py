"""Mean and confidence interval of each row of a [rows, seeds] matrix, computed by scipy.

Why a t interval is the default over seeds: a bootstrap interval of a mean treats the few seeds
we have as the whole population, so it is too narrow at 3-10 seeds (it under-covers), while
mean +- t(n-1) * sd / sqrt(n) (scipy.stats.t) keeps its coverage at any n for roughly normal
seed-to-seed variation. The bootstraps ("percentile", "bca") are scipy.stats.bootstrap with a
Generator seeded from rng_seed; every row is resampled with the same seed sets, so the band of a
curve is made of coherent whole-run resamples. scipy is imported where used: `import zoo` stays
quick.
"""

from __future__ import annotations

import warnings

import numpy as np

from zoo.stats._inputs import power_of_two_scale
from zoo_common.errors import ZooError

# scipy.stats.bootstrap's `batch` (resamples per vectorized call). Fixed, so the random stream,
# hence every interval, never depends on how many rows were asked for at once.
BATCH_RESAMPLES = 512
_BLOCK_VALUES = 1 << 22  # resampled values held at once (rows x BATCH_RESAMPLES x seeds): 32 MB
_SCIPY_METHODS = {"percentile": "percentile", "bca": "BCa"}


def t_interval_of_means(data: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray,
                                                                       np.ndarray]:
    """Mean and t interval (mean +- t(n-1) sd / sqrt(n)) of each row of data [rows, n], n >= 2."""
    from scipy import stats

    mean = data.mean(axis=1)
    half = stats.t.ppf((1 + float(confidence)) / 2, data.shape[1] - 1) * stats.sem(data, axis=1)
    return mean, mean - half, mean + half


def mean_of_sorted(sample: np.ndarray, axis: int = -1) -> np.ndarray:
    """The mean, summed in ascending order. Why: a resample that is a permutation of the seeds
    (1 in 4.5 at 3 seeds) then has exactly the estimate's mean, so BCa counts it as the tie it
    is; np.mean would round it a bit up or down by the draw's order, moving BCa's bias
    correction (by up to a quarter of the interval's width at 3 seeds)."""
    return np.mean(np.sort(sample, axis=axis), axis=axis)


def bootstrap_of_means(data: np.ndarray, *, confidence: float, n_resamples: int, rng_seed: int,
                       method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and scipy.stats.bootstrap interval of each row of data [rows, n], resampling columns.

    A row whose values are all equal gets the point interval (BCa is undefined there). Rows go to
    scipy in blocks that bound memory; each block starts from the same seeded Generator, so every
    row sees the same resampled seed sets, whatever the number of rows.
    """
    from scipy import stats

    mean = data.mean(axis=1)
    low, high = mean.copy(), mean.copy()
    varied = np.flatnonzero(np.ptp(data, axis=1) > 0)
    block = max(1, _BLOCK_VALUES // (BATCH_RESAMPLES * data.shape[1]))
    for start in range(0, len(varied), block):
        rows = varied[start:start + block]
        # BCa is undefined when every resample falls on one side of the estimate (scipy warns
        # and gives NaN); those rows fall back to the percentile interval below
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", stats.DegenerateDataWarning)
            result = stats.bootstrap(
                (data[rows],), mean_of_sorted, n_resamples=n_resamples, batch=BATCH_RESAMPLES,
                vectorized=True, axis=-1, confidence_level=confidence,
                method=_SCIPY_METHODS[method], rng=np.random.default_rng(rng_seed),
            )
        ci_low, ci_high = result.confidence_interval
        undefined = np.isnan(ci_low) | np.isnan(ci_high)
        if undefined.any():
            tail = (1 - confidence) / 2
            percentile = np.quantile(result.bootstrap_distribution[undefined], [tail, 1 - tail],
                                     axis=-1)
            ci_low[undefined], ci_high[undefined] = percentile
        low[rows], high[rows] = ci_low, ci_high
    return mean, low, high


def row_intervals(data: np.ndarray, *, confidence: float, n_resamples: int, rng_seed: int,
                  method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and interval of each row of data [rows, n seeds], by the method asked.

    Values are divided by a power of two first (power_of_two_scale: exact, so no sum overflows
    near 1e308) and multiplied back at the end."""
    scale = power_of_two_scale(data, axis=1)
    if method == "t":
        mean, low, high = t_interval_of_means(data / scale, confidence)
    else:
        mean, low, high = bootstrap_of_means(data / scale, confidence=confidence,
                                             n_resamples=n_resamples, rng_seed=rng_seed,
                                             method=method)
    scale = scale[:, 0]
    with np.errstate(over="ignore"):
        low, high = low * scale, high * scale
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        peak = float(np.max(np.abs(data)))
        raise ZooError(
            f"the t interval reaches beyond the float64 range (values as large as {peak:.3g}); "
            "rescale the values (e.g. divide by 1e300), or use method='percentile', whose end "
            "points stay within the values"
        )
    return mean * scale, low, high
