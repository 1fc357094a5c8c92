"""The Multi-Bootstrap of MultiBERTs (Sellam et al., 2022, section 3): seeds AND examples.

A score matrix [n_seeds, n_examples] (e.g. per-example loss of each seed's model) has two sources
of randomness that a claim about the *training procedure* must average over: which runs we
happened to train, and which evaluation examples we happened to draw. Each bootstrap resample
draws seeds with replacement and examples with replacement and takes the mean over the resampled
grid. Two arms:

- paired: the same seeds exist in both arms (e.g. the same runs at two steps, or one intervention
  applied to each seed); one seed draw and one example draw serve both arms.
- unpaired: seeds are drawn independently per arm (different runs), examples are still shared.

p-value: `alternative` names the hypothesis, and the result says it in words. "greater" is the
paper's released code (report_ci): H0 B - A <= 0, p = the fraction of resamples whose difference
delta* = mean_b* - mean_a* is <= 0. "less" is the mirror (H0 B - A >= 0, the fraction >= 0), and
"two-sided" (the default: a test must not quietly assume which arm is better) is twice the
smaller of the two, at most 1. Every p-value is floored at 1 / n_resamples: no resample on the
far side of 0 means "fewer than 1 in n_resamples", never 0. Intervals are percentile intervals of
the resamples, as the paper; mean_a / mean_b / difference are the plug-in estimates.

The resampling is ours, on numpy's Generator: scipy.stats.bootstrap resamples one axis of its
samples, and this draws seeds and examples jointly (tested against scipy where the two agree).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from zoo.stats._inputs import (
    FEW_SEEDS,
    check_options,
    power_of_two_scale,
    real_array,
    too_few_seeds_error,
)
from zoo_common.errors import ZooError

ALTERNATIVES = ("two-sided", "less", "greater")
_HYPOTHESES = {
    "two-sided": "two-sided test of B - A = 0",
    "less": "one-sided test of B - A >= 0 against B - A < 0",
    "greater": "one-sided test of B - A <= 0 against B - A > 0",
}


def check_alternative(alternative) -> None:
    """An unknown alternative is an error: a p-value must never answer another question."""
    if alternative not in ALTERNATIVES:
        raise ZooError(
            f"unknown alternative {alternative!r}; choose one of two-sided (B - A = 0, the "
            "default), less (H0 B - A >= 0: is B lower?), greater (H0 B - A <= 0: is B higher?)"
        )


def hypothesis_words(alternative: str) -> str:
    """The test a p-value answers, in words (B is arm b, A is arm a)."""
    return _HYPOTHESES[alternative]


def format_p(p: float, n_resamples: int, alternative: str) -> str:
    """'p = 0.031 (two-sided test of B - A = 0)'; at the floor 'p <= 0.0001 (...)', since no
    resample on the far side of 0 says "fewer than 1 in n_resamples", not "never"."""
    words = hypothesis_words(alternative)
    if p <= 1 / n_resamples:
        return f"p <= {1 / n_resamples:.2g} ({words}; the floor, 1 / {n_resamples} resamples)"
    return f"p = {p:.4g} ({words})"


@dataclass(frozen=True)
class MultiBootstrapResult:
    """Means of both arms, the difference b - a with its interval, and the p-value of the test
    named by alternative (its words: `hypothesis`).

    With b=None only the a fields are set (b fields, difference, p_value, alternative are None).
    omitted_examples: example columns left out for NaN under nan_policy="omit".
    """

    mean_a: float
    a_low: float
    a_high: float
    mean_b: float | None
    b_low: float | None
    b_high: float | None
    difference: float | None
    difference_low: float | None
    difference_high: float | None
    p_value: float | None
    paired: bool | None
    n_seeds_a: int
    n_seeds_b: int | None
    n_examples: int
    confidence: float
    n_resamples: int
    rng_seed: int
    omitted_examples: tuple = ()
    alternative: str | None = None

    @property
    def hypothesis(self) -> str:
        """The test p_value answers, in words, e.g. "two-sided test of B - A = 0" ("" if no b)."""
        return "" if self.alternative is None else hypothesis_words(self.alternative)

    @property
    def note(self) -> str:
        """In words, what few seeds mean for these numbers ("" when nothing)."""
        counts = {"a": self.n_seeds_a} if self.n_seeds_b is None else {
            "a": self.n_seeds_a, "b": self.n_seeds_b}
        few = {arm: n for arm, n in counts.items() if n < FEW_SEEDS}
        if not few:
            return ""
        where = ", ".join(f"{n} in arm {arm}" for arm, n in few.items())
        return (f"few seeds ({where}; fewer than {FEW_SEEDS}): resampling so few seeds "
                "understates the seed-to-seed variation, so the intervals are too narrow and "
                "the p-value too small; train more seeds")

    def format(self) -> str:
        """The means, the difference and the test, in a few lines."""
        conf = f"{self.confidence:.0%}"

        def cell(mean, low, high):
            return f"{mean:.4g} [{low:.4g}, {high:.4g}]"

        grid = (f"{self.n_seeds_a}{'' if self.n_seeds_b is None else f' + {self.n_seeds_b}'} "
                f"seeds x {self.n_examples} examples; {self.n_resamples} resamples; {conf} "
                "percentile intervals")
        if self.mean_b is None:
            lines = [f"A {cell(self.mean_a, self.a_low, self.a_high)} (Multi-Bootstrap, {grid})"]
        else:
            lines = [
                f"Multi-Bootstrap ({'paired' if self.paired else 'unpaired'}; {grid}):",
                (f"  A {cell(self.mean_a, self.a_low, self.a_high)}   "
                 f"B {cell(self.mean_b, self.b_low, self.b_high)}"),
                (f"  B - A {cell(self.difference, self.difference_low, self.difference_high)}   "
                 f"{format_p(self.p_value, self.n_resamples, self.alternative)}"),
            ]
        if self.note:
            lines.append(f"  note: {self.note}")
        return "\n".join(lines)

    __str__ = format


def _as_matrix(scores, arm: str) -> np.ndarray:
    matrix = real_array(scores, f"arm {arm}")
    if matrix.ndim != 2:
        raise ZooError(
            f"arm {arm} must be a [n_seeds, n_examples] score matrix, got shape {matrix.shape}"
        )
    if matrix.shape[1] < 1:
        raise ZooError(f"arm {arm} has no examples (shape {matrix.shape})")
    if matrix.shape[0] < 2:
        raise too_few_seeds_error(matrix.shape[0], f"in arm {arm}")
    return matrix


def _seed_labels(labels: Sequence | None, n: int, arm: str) -> list:
    if labels is None:
        return list(range(n))
    labels = list(labels)
    if len(labels) != n:
        raise ZooError(f"arm {arm} has {n} seed rows but {len(labels)} seed labels")
    if len(set(labels)) != len(labels):
        raise ZooError(f"arm {arm} repeats seed labels: {sorted(labels)}; one row per seed")
    return labels


def _align_paired(a, b, seeds_a, seeds_b) -> np.ndarray:
    """Reorder b's rows to a's seed order; any difference in the seed sets is an error."""
    only_a = [s for s in seeds_a if s not in set(seeds_b)]
    only_b = [s for s in seeds_b if s not in set(seeds_a)]
    if only_a or only_b:
        raise ZooError(
            f"paired comparison needs the same seeds in both arms; only in a: {only_a}, only in "
            f"b: {only_b}. Restrict both arms to the common seeds, or use paired=False (seeds "
            "then count as independent runs)"
        )
    position = {s: i for i, s in enumerate(seeds_b)}
    return b[[position[s] for s in seeds_a]]


def _drop_non_finite(arms: dict[str, np.ndarray], seeds: dict[str, list], nan_policy: str):
    bad_cells = [
        (arm, seeds[arm][r], c)
        for arm, m in arms.items()
        for r, c in zip(*np.nonzero(~np.isfinite(m)))
    ]
    if not bad_cells:
        return arms, ()
    if nan_policy == "raise":
        shown = ", ".join(f"arm {arm} seed {s} example {c}" for arm, s, c in bad_cells[:10])
        more = f" and {len(bad_cells) - 10} more" if len(bad_cells) > 10 else ""
        raise ZooError(
            f"{len(bad_cells)} score(s) are NaN or infinite ({shown}{more}); they are never "
            "dropped silently. Fix them, or pass nan_policy='omit' to leave out every example "
            "column that has one (listed in the result's omitted_examples)"
        )
    bad_columns = sorted({int(c) for _, _, c in bad_cells})
    keep = np.setdiff1d(np.arange(next(iter(arms.values())).shape[1]), bad_columns)
    if len(keep) == 0:
        raise ZooError("every example has a NaN or infinite score in some seed: nothing left")
    return {arm: m[:, keep] for arm, m in arms.items()}, tuple(bad_columns)


# Resamples are drawn in chunks so memory stays bounded (chunk x n items of int64 indices).
CHUNK_RESAMPLES = 2048


def draw_indices(rng: np.random.Generator, n_resamples: int, n_items: int) -> np.ndarray:
    """[n_resamples, n_items] indices drawn uniformly with replacement (one row per resample)."""
    return rng.integers(0, n_items, size=(n_resamples, n_items), dtype=np.int64)


def counts_from_indices(indices: np.ndarray, n_items: int) -> np.ndarray:
    """How often each item appears in each resample row: [rows, n_items] float64 counts.

    Why counts: a mean over a resample is then one matrix product, so 10k resamples of a
    [seeds, examples] matrix cost a couple of GEMMs instead of 10k fancy-index copies."""
    indices = np.asarray(indices, dtype=np.int64)
    rows = indices.shape[0]
    offsets = (np.arange(rows, dtype=np.int64) * n_items)[:, None]
    flat = np.bincount((indices + offsets).ravel(), minlength=rows * n_items)
    return flat.reshape(rows, n_items).astype(np.float64)


def _resample_means(a, b, paired, n_resamples, rng, resamples):
    """Bootstrap means [n_resamples] per arm (b's None without b), seeds and examples drawn
    jointly on numpy's Generator: scipy.stats.bootstrap has no two-way resampling."""
    n_a, n_x = a.shape
    n_b = None if b is None else b.shape[0]
    if resamples is not None:  # a fixed index set (tests): (seed_idx_a, seed_idx_b, example_idx)
        chunks = [resamples]
    else:
        chunks = []
        for start in range(0, n_resamples, CHUNK_RESAMPLES):
            size = min(CHUNK_RESAMPLES, n_resamples - start)
            idx_a = draw_indices(rng, size, n_a)
            idx_b = None if b is None or paired else draw_indices(rng, size, n_b)
            chunks.append((idx_a, idx_b, draw_indices(rng, size, n_x)))
    boot_a, boot_b = [], []
    for idx_a, idx_b, idx_x in chunks:
        example_counts = counts_from_indices(idx_x, n_x)
        seed_counts_a = counts_from_indices(idx_a, n_a)
        boot_a.append((seed_counts_a * (example_counts @ a.T)).sum(axis=1) / (n_a * n_x))
        if b is not None:
            seed_counts_b = seed_counts_a if paired else counts_from_indices(idx_b, n_b)
            boot_b.append((seed_counts_b * (example_counts @ b.T)).sum(axis=1) / (n_b * n_x))
    return np.concatenate(boot_a), (np.concatenate(boot_b) if b is not None else None)


def _p_value(deltas: np.ndarray, alternative: str) -> float:
    """The bootstrap p-value of `alternative` from the resampled differences, floored at 1/n."""
    at_or_below, at_or_above = float(np.mean(deltas <= 0)), float(np.mean(deltas >= 0))
    p = {"greater": at_or_below, "less": at_or_above,
         "two-sided": min(1.0, 2 * min(at_or_below, at_or_above))}[alternative]
    return max(p, 1 / len(deltas))


def multi_bootstrap(
    a,
    b=None,
    *,
    paired: bool | None = None,
    seeds_a: Sequence | None = None,
    seeds_b: Sequence | None = None,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    rng_seed: int = 0,
    nan_policy: str = "raise",
    alternative: str = "two-sided",
    _resamples: tuple | None = None,
) -> MultiBootstrapResult:
    """Multi-Bootstrap over seeds and examples of one arm (b=None) or of the difference b - a.

    a, b: [n_seeds, n_examples] per-seed, per-example scores; columns are the same examples in
    both arms. paired must be stated when b is given. seeds_a / seeds_b: seed labels of the rows
    (paired mode matches rows by label and names any seed missing from one arm; without labels,
    row i of a is paired with row i of b). alternative: the hypothesis the p-value tests,
    "two-sided" (B - A = 0), "greater" (H0 B - A <= 0, the paper's) or "less" (H0 B - A >= 0).
    _resamples: private hook for tests, a tuple
    (seed_indices_a [R, n_a], seed_indices_b [R, n_b] or None, example_indices [R, n_x]).
    """
    check_options(confidence=confidence, n_resamples=n_resamples, rng_seed=rng_seed,
                  nan_policy=nan_policy)
    check_alternative(alternative)
    if paired is not None and not isinstance(paired, bool):
        raise ZooError(f"paired must be True or False, got {paired!r}")
    a = _as_matrix(a, "a")
    labels = {"a": _seed_labels(seeds_a, a.shape[0], "a")}
    arms = {"a": a}
    if b is not None:
        if paired is None:
            raise ZooError(
                "say paired=True (the same seeds trained both arms; one seed draw "
                "serves both) or paired=False (independent runs per arm)"
            )
        b = _as_matrix(b, "b")
        if b.shape[1] != a.shape[1]:
            raise ZooError(
                f"both arms must score the same examples: a has {a.shape[1]} "
                f"columns, b has {b.shape[1]}"
            )
        labels["b"] = _seed_labels(seeds_b, b.shape[0], "b")
        if paired:
            if seeds_a is None and seeds_b is None and a.shape[0] != b.shape[0]:
                raise ZooError(
                    f"paired comparison needs the same seeds in both arms: a has "
                    f"{a.shape[0]} seed rows, b has {b.shape[0]}; pass seeds_a/"
                    "seeds_b to name them, or use paired=False"
                )
            b = _align_paired(a, b, labels["a"], labels["b"])
            labels["b"] = labels["a"]
        arms["b"] = b
    arms, omitted = _drop_non_finite(arms, labels, nan_policy)
    a, b = arms["a"], arms.get("b")
    # one scale for both arms (power_of_two_scale: exact, no overflow near 1e308); undone below
    scale = float(power_of_two_scale(a if b is None else np.concatenate([a.ravel(), b.ravel()])))
    a, b = a / scale, (None if b is None else b / scale)
    rng = np.random.default_rng(rng_seed)
    boot_a, boot_b = _resample_means(a, b, bool(paired), n_resamples, rng, _resamples)
    boot_a, boot_b = boot_a * scale, (None if b is None else boot_b * scale)
    tail = (1 - confidence) / 2
    a_low, a_high = np.quantile(boot_a, [tail, 1 - tail])
    fields = {
        "mean_a": float(a.mean() * scale),
        "a_low": float(a_low),
        "a_high": float(a_high),
        "mean_b": None,
        "b_low": None,
        "b_high": None,
        "difference": None,
        "difference_low": None,
        "difference_high": None,
        "p_value": None,
        "paired": paired if b is not None else None,
        "n_seeds_a": a.shape[0],
        "n_seeds_b": None,
        "n_examples": a.shape[1],
        "confidence": confidence,
        "n_resamples": len(boot_a),
        "rng_seed": rng_seed,
        "omitted_examples": omitted,
    }
    if b is not None:
        with np.errstate(over="ignore"):
            deltas = boot_b - boot_a
            difference = (b.mean() - a.mean()) * scale
        if not (np.isfinite(difference) and np.isfinite(deltas).all()):
            peak = max(float(np.abs(a).max()), float(np.abs(b).max())) * scale
            raise ZooError(f"the difference b - a overflows float64 (scores as large as "
                           f"{peak:.3g}); rescale the scores, e.g. divide both arms by 1e300")
        b_low, b_high = np.quantile(boot_b, [tail, 1 - tail])
        d_low, d_high = np.quantile(deltas, [tail, 1 - tail])
        fields.update(
            mean_b=float(b.mean() * scale),
            b_low=float(b_low),
            b_high=float(b_high),
            difference=float(difference),
            difference_low=float(d_low),
            difference_high=float(d_high),
            p_value=_p_value(deltas, alternative),
            n_seeds_b=b.shape[0],
            alternative=alternative,
        )
    return MultiBootstrapResult(**fields)
