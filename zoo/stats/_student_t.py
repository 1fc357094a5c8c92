"""The Student-t quantile and the t interval of a mean, without scipy (a dev dependency only).

Why a t interval is the default over seeds: a bootstrap interval of a mean treats the few seeds
we have as the whole population, so it is too narrow at 3-10 seeds (it under-covers), while
mean +- t(n-1) * sd / sqrt(n) keeps its coverage at any n for roughly normal seed-to-seed
variation. The quantile is computed exactly, from the regularized incomplete beta function
(continued fraction, Numerical Recipes 6.4) and a safeguarded Newton solve, not approximated.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from zoo_common.errors import ZooError

_TINY = 1e-300
_EPS = 1e-15


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (modified Lentz); fast for x < (a+1)/(a+b+2)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for numerator in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                          -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            step = c * d
            h *= step
        if abs(step - 1.0) < _EPS:
            return h
    raise ZooError(f"the incomplete beta function did not converge for a={a}, b={b}, x={x}")


def regularized_beta(x: float, a: float, b: float, *, one_minus_x: float | None = None) -> float:
    """I_x(a, b), the regularized incomplete beta function; one_minus_x avoids cancellation
    when x is close to 1 (the caller often knows 1 - x more precisely than x)."""
    y = 1.0 - x if one_minus_x is None else one_minus_x
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log(y))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, y) / b


def t_upper_tail(t: float, df: float) -> float:
    """P(T > t) for t >= 0, T Student-t with df degrees of freedom."""
    t2 = t * t
    return 0.5 * regularized_beta(df / (df + t2), df / 2.0, 0.5, one_minus_x=t2 / (df + t2))


def t_cdf(t: float, df: float) -> float:
    tail = t_upper_tail(abs(t), df)
    return 1.0 - tail if t > 0 else tail


def _t_pdf(t: float, df: float) -> float:
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_norm - (df + 1) / 2 * math.log1p(t * t / df))


@lru_cache(maxsize=1024)
def t_ppf(p: float, df: float) -> float:
    """The p quantile of Student's t with df > 0 degrees of freedom (scipy.stats.t.ppf)."""
    if not 0.0 < p < 1.0:
        raise ZooError(f"a quantile level must lie strictly between 0 and 1, got {p!r}")
    if not (math.isfinite(df) and df > 0):
        raise ZooError(f"degrees of freedom must be a positive number, got {df!r}")
    if p < 0.5:
        return -t_ppf(1.0 - p, df)
    if p == 0.5:
        return 0.0
    q = 1.0 - p  # solve P(T > t) = q, which keeps precision far out in the tail
    if df == 1.0:
        return 1.0 / math.tan(math.pi * q)  # Cauchy, exactly
    low, high = 0.0, 1.0
    while t_upper_tail(high, df) > q:  # bracket the root: the tail falls as t grows
        low, high = high, high * 2.0
    t = (low + high) / 2
    for _ in range(200):
        excess = t_upper_tail(t, df) - q  # > 0: t is still too small
        if excess > 0:
            low = t
        else:
            high = t
        newton = t + excess / _t_pdf(t, df)
        following = newton if low < newton < high else (low + high) / 2
        if abs(following - t) <= 4 * _EPS * max(1.0, abs(t)):
            return following
        t = following
    return t


def t_interval_of_means(data: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray,
                                                                       np.ndarray]:
    """Mean and t interval (mean +- t(n-1) sd / sqrt(n)) of each row of data [rows, n], n >= 2."""
    n = data.shape[1]
    mean = data.mean(axis=1)
    half = t_ppf((1 + float(confidence)) / 2, n - 1) * data.std(axis=1, ddof=1) / math.sqrt(n)
    return mean, mean - half, mean + half
