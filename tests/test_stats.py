"""zoo.stats: intervals over seeds and the Multi-Bootstrap (event timing: test_stats_events)."""

import itertools
import warnings

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats as scipy_stats

from zoo.stats import (
    _intervals,
    multi_bootstrap,
    seed_interval,
    seed_intervals,
)
from zoo.stats._intervals import BATCH_RESAMPLES
from zoo.stats.multi_bootstrap import _resample_means
from zoo_common.errors import ZooError

# ---------------------------------------------------------------- interval over seeds


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_seed_interval_is_scipys_bootstrap_from_the_same_seed(method):
    values = np.random.default_rng(7).gamma(2.0, size=15)  # skewed, so BCa != percentile
    ours = seed_interval(values, method=method, n_resamples=20_000, rng_seed=123)
    theirs = scipy_stats.bootstrap(
        (values,),
        np.mean,
        method=method.upper() if method == "bca" else method,
        n_resamples=20_000,
        batch=BATCH_RESAMPLES,
        rng=np.random.default_rng(123),
    )
    assert ours.mean == pytest.approx(values.mean())
    assert (ours.low, ours.high) == pytest.approx(tuple(theirs.confidence_interval), abs=1e-12)
    assert ours.n_seeds == 15 and ours.method == method


def test_bca_counts_resamples_that_permute_the_seeds_as_ties():
    """A resample that is a permutation of the seeds has the estimate's mean exactly; np.mean
    rounds it up or down by the draw's order (for these values), which would move BCa's bias
    correction. Summed in sorted order, the permutations tie, and BCa is scipy's with it."""
    values = np.array([3.126284742075692, 0.8792858976810416, 1.142831572831691])
    orders = np.array(list(itertools.permutations(values)))
    assert len(set(np.mean(orders, axis=1).tolist())) == 2  # rounding breaks the tie...
    assert set(_intervals.mean_of_sorted(orders).tolist()) == {  # ...sorting keeps it
        float(_intervals.mean_of_sorted(values))}
    ours = seed_interval(values, method="bca", n_resamples=5000, rng_seed=1)
    theirs = scipy_stats.bootstrap((values,), _intervals.mean_of_sorted, method="BCa",
                                   n_resamples=5000, batch=BATCH_RESAMPLES,
                                   rng=np.random.default_rng(1))
    assert (ours.low, ours.high) == pytest.approx(tuple(theirs.confidence_interval), abs=1e-12)


def test_every_step_of_a_curve_resamples_the_same_seed_sets_however_many_steps(monkeypatch):
    """A step's interval is the one seed_interval gives it, bit for bit, whatever else is in the
    table; and rows go to scipy in blocks that bound memory: one row per block changes nothing.
    (BCa counts resamples whose mean ties the estimate, so even a last-bit difference in how the
    means are summed would move it.)"""
    values = np.random.default_rng(17).gamma(1.0, size=(40, 5))
    table = {"step": np.repeat(np.arange(40), 5), "seed": np.tile(np.arange(5), 40),
             "value": values.ravel()}
    together = seed_intervals(table, method="bca", n_resamples=3000, rng_seed=2)
    singles = [seed_interval(row, method="bca", n_resamples=3000, rng_seed=2) for row in values]
    assert together.lows.tolist() == [single.low for single in singles]
    assert together.highs.tolist() == [single.high for single in singles]
    monkeypatch.setattr(_intervals, "_BLOCK_VALUES", 1)
    one_by_one = seed_intervals(table, method="bca", n_resamples=3000, rng_seed=2)
    assert together.lows.tolist() == one_by_one.lows.tolist()
    assert together.highs.tolist() == one_by_one.highs.tolist()


def test_a_bca_interval_scipy_cannot_form_falls_back_to_the_percentile_interval():
    # rng_seed 4 draws two resamples (seeds 2, 2, 2 and 1, 2, 2), both above the mean: BCa's bias
    # correction is infinite (scipy warns and gives NaN), so, quietly, the percentile interval
    values = [0.0, 1.0, 3.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bca = seed_interval(values, method="bca", n_resamples=2, rng_seed=4)
    percentile = seed_interval(values, method="percentile", n_resamples=2, rng_seed=4)
    assert (bca.low, bca.high) == (percentile.low, percentile.high)
    assert (bca.low, bca.high) == pytest.approx(np.quantile([3.0, 7 / 3], [0.025, 0.975]))


def test_bca_differs_from_percentile_on_skewed_data():
    values = np.random.default_rng(7).gamma(0.5, size=10)
    percentile = seed_interval(values, method="percentile")
    bca = seed_interval(values, method="bca")
    assert (bca.low, bca.high) != (percentile.low, percentile.high)


def test_same_rng_seed_same_interval_and_other_seed_differs():
    values = [1.0, 2.5, 2.0, 4.0, 3.3]
    first = seed_interval(values, method="percentile", rng_seed=5)
    assert first == seed_interval(values, method="percentile", rng_seed=5)
    other = seed_interval(values, method="percentile", rng_seed=6)
    assert (first.low, first.high) != (other.low, other.high)
    # the default t interval resamples nothing: the seed cannot move it
    t5, t6 = seed_interval(values, rng_seed=5), seed_interval(values, rng_seed=6)
    assert (t5.low, t5.high) == (t6.low, t6.high) and t5.method == "t"


# ---------------------------------------------------------------- the default: Student's t


def test_default_interval_is_scipys_t_interval():
    values = np.random.default_rng(8).normal(size=4)
    ours = seed_interval(values)
    low, high = scipy_stats.t.interval(0.95, 3, loc=values.mean(), scale=scipy_stats.sem(values))
    assert (ours.low, ours.high) == pytest.approx((low, high), abs=1e-10)
    assert ours.method == "t" and ours.n_seeds == 4


def _coverage(n_seeds: int, method: str, draws: int = 2000) -> float:
    """Share of `draws` sets of n_seeds standard-normal seeds whose interval covers the mean 0."""
    values = np.random.default_rng(n_seeds).normal(size=(draws, n_seeds))
    table = {"step": np.repeat(np.arange(draws), n_seeds),
             "seed": np.tile(np.arange(n_seeds), draws), "value": values.ravel()}
    result = seed_intervals(table, method=method, n_resamples=2000)
    return float(np.mean((result.lows <= 0) & (0 <= result.highs)))


def test_default_interval_keeps_its_coverage_at_five_seeds():
    values = np.random.default_rng(11).normal(loc=3.0, size=(2000, 5))
    covered = [(r.low <= 3.0 <= r.high) for r in map(seed_interval, values)]
    assert 0.93 <= np.mean(covered) <= 0.97
    for n_seeds in (3, 10):  # the same over the whole range of seed counts researchers have
        assert 0.93 <= _coverage(n_seeds, "t") <= 0.97
    # ...which a bootstrap over 5 seeds does not: it treats the 5 seeds as the population
    assert _coverage(5, "percentile") < 0.9


def test_few_seeds_are_said_in_words():
    few = seed_interval([1.0, 2.0, 4.0])
    assert few.few_seeds and few.n_seeds == 3
    assert "only 3 seeds (fewer than 5)" in few.note and few.note in str(few)
    assert "mean over 3 seeds, 95% t interval" in few.format()
    enough = seed_interval([1.0, 2.0, 4.0, 3.0, 2.5])
    assert not enough.few_seeds and enough.note == "" and "note" not in enough.format()
    bootstrap = seed_interval([1.0, 2.0, 4.0, 3.0, 2.5], method="percentile")
    assert "too narrow" in bootstrap.note and "percentile bootstrap" in bootstrap.format()
    curve = seed_intervals({"step": [0, 0, 0, 0, 0, 1, 1], "seed": [1, 2, 3, 4, 5, 1, 2],
                            "value": [1.0, 2.0, 3.0, 2.0, 1.5, 4.0, 5.0]})
    assert curve.few_seeds and curve.note.startswith("at step(s) 1: only 2 seeds")


def test_single_seed_explains_why_no_interval():
    with pytest.raises(ZooError, match=r"at least 2 seeds, got 1 .*every resample is that same"):
        seed_interval([3.2], seeds=[4])
    table = {"step": [0, 0, 10], "seed": [1, 2, 1], "value": [1.0, 2.0, 3.0]}
    with pytest.raises(ZooError, match=r"at least 2 seeds.*step\(s\) \[10\]"):
        seed_intervals(table)


def test_nan_is_reported_never_dropped_silently():
    with pytest.raises(ZooError, match=r"1 value\(s\) are NaN.*seed 7.*nan_policy='omit'"):
        seed_interval([1.0, np.nan, 2.0], seeds=[3, 7, 9])
    kept = seed_interval([1.0, np.nan, 2.0, 4.0], seeds=[3, 7, 9, 11], nan_policy="omit")
    assert kept.omitted_seeds == (7,) and kept.n_seeds == 3
    assert kept.mean == pytest.approx(7 / 3)
    table = {
        "step": [0, 0, 0, 5, 5, 5],
        "seed": [1, 2, 3, 1, 2, 3],
        "value": [1.0, 2.0, 3.0, 4.0, np.nan, 5.0],
    }
    with pytest.raises(ZooError, match=r"step 5 seed 2"):
        seed_intervals(table)
    result = seed_intervals(table, nan_policy="omit")
    assert result.omitted == ((5, 2),)
    assert result.n_seeds.tolist() == [3, 2]


def test_seed_intervals_leave_out_steps_no_seed_was_measured_at():
    """zoo.metrics' table has a row per training step; an eval metric is null where not evaluated."""
    table = pa.table({
        "step": [0, 0, 1, 1, 2, 2, 3, 3],
        "seed": [1, 2] * 4,
        "loss": [5.0, 5.5, None, None, 4.0, 4.4, None, None],
    })
    result = seed_intervals(table, value="loss", n_resamples=200)
    assert result.steps.tolist() == [0, 2]
    assert result.means.tolist() == pytest.approx([5.25, 4.2])
    gap = pa.table({"step": [0, 0, 0, 1, 1, 1], "seed": [1, 2, 3] * 2,
                    "loss": [5.0, 5.5, 5.2, 4.0, None, 4.2]})  # seed 2 missing at step 1: a gap
    with pytest.raises(ZooError, match=r"1 value\(s\) are NaN, infinite or missing \(step 1 seed 2\)"):
        seed_intervals(gap, value="loss")
    kept = seed_intervals(gap, value="loss", nan_policy="omit", n_resamples=200)
    assert kept.omitted == ((1, 2),) and kept.n_seeds.tolist() == [3, 2]
    with pytest.raises(ZooError, match="every row is null"):
        seed_intervals(pa.table({"step": [0], "seed": [1], "loss": pa.array([None], pa.float64())}),
                       value="loss")


def test_seed_intervals_per_step_matches_single_step_calls_and_arrow_output():
    rng = np.random.default_rng(0)
    steps, seeds = np.meshgrid([0, 1, 2, 4, 8], [11, 12, 13, 14], indexing="ij")
    values = rng.normal(size=steps.shape) + steps
    shuffled = rng.permutation(steps.size)  # row order of the input must not matter
    table = pa.table(
        {
            "step": steps.ravel()[shuffled],
            "seed": seeds.ravel()[shuffled],
            "loss": values.ravel()[shuffled],
        }
    )
    result = seed_intervals(table, value="loss", method="bca", n_resamples=2000, rng_seed=3)
    assert result.steps.tolist() == [0, 1, 2, 4, 8]
    for i in range(5):
        single = seed_interval(values[i], method="bca", n_resamples=2000, rng_seed=3)
        assert (result.means[i], result.lows[i], result.highs[i]) == pytest.approx(
            (single.mean, single.low, single.high), abs=1e-12
        )
    arrow = result.to_arrow()
    assert arrow.column_names == ["step", "mean", "low", "high", "n_seeds"]
    assert arrow.num_rows == 5


def test_seed_intervals_bad_input_messages():
    with pytest.raises(ZooError, match=r"no column 'value'.*step, seed, loss"):
        seed_intervals({"step": [0], "seed": [1], "loss": [1.0]})
    with pytest.raises(ZooError, match=r"duplicate \(step, seed\).*step 0 seed 1"):
        seed_intervals({"step": [0, 0, 0], "seed": [1, 1, 2], "value": [1.0, 2.0, 3.0]})
    with pytest.raises(ZooError, match=r"unknown interval method 'student'.*percentile, bca"):
        seed_interval([1.0, 2.0], method="student")


# ---------------------------------------------------------------- Multi-Bootstrap


A = np.array([[1.0, 2.0], [3.0, 4.0]])
B = np.array([[1.0, 2.0], [3.0, 8.0]])  # differs from A only at (seed 1, example 1), by +4


def test_multi_bootstrap_enumerated_hand_case():
    """2 seeds x 2 examples: pass all 4 x 4 equally likely resamples through the hook.

    Hand calculation: delta* = mean over the resampled grid of (B - A) = Cs1 * Cx1 (counts of
    seed 1 and example 1 in the draw, each 0/1/2 with probability 1/4, 1/2, 1/4). So
    P(delta* <= 0) = 1 - (3/4)^2 = 7/16; sorted delta*: seven 0, four 1, four 2, one 4; quartiles
    (numpy linear) 0 and 2; the mean of delta* is E[Cs1] E[Cx1] = 1 = mean(B) - mean(A).
    """
    draws = list(itertools.product([0, 1], repeat=2))
    seed_idx = np.array([s for s, _ in itertools.product(draws, draws)])
    example_idx = np.array([x for _, x in itertools.product(draws, draws)])
    result = multi_bootstrap(
        A, B, paired=True, confidence=0.5, _resamples=(seed_idx, None, example_idx)
    )
    assert result.p_value == 7 / 8  # two-sided: 2 x min(7/16, P(delta* >= 0) = 1)
    assert result.alternative == "two-sided" and result.hypothesis == "two-sided test of B - A = 0"
    hook = {"confidence": 0.5, "_resamples": (seed_idx, None, example_idx)}
    assert multi_bootstrap(A, B, paired=True, alternative="greater", **hook).p_value == 7 / 16
    assert multi_bootstrap(A, B, paired=True, alternative="less", **hook).p_value == 1.0
    assert (result.difference_low, result.difference_high) == (0.0, 2.0)
    assert result.difference == 1.0
    assert (result.mean_a, result.mean_b) == (2.5, 3.5)
    assert result.n_resamples == 16


def test_multi_bootstrap_unpaired_single_fixed_resample_by_hand():
    # a draws seed 0 twice, b draws seed 1 twice, examples (1, 0):
    # mean_a* = (2 + 1) / 2 = 1.5, mean_b* = (8 + 3) / 2 = 5.5, delta* = 4
    hook = (np.array([[0, 0]]), np.array([[1, 1]]), np.array([[1, 0]]))
    result = multi_bootstrap(A, B, paired=False, _resamples=hook)
    assert (result.a_low, result.a_high) == (1.5, 1.5)
    assert (result.b_low, result.b_high) == (5.5, 5.5)
    # no resample at or below 0, but one resample cannot show a p below 1 / 1: the floor
    assert (result.difference_low, result.p_value) == (4.0, 1.0)


def test_weighted_resample_means_equal_naive_gather():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 7)), rng.normal(size=(4, 7))
    idx_a, idx_b = rng.integers(0, 5, (50, 5)), rng.integers(0, 4, (50, 4))
    idx_x = rng.integers(0, 7, (50, 7))
    boot_a, boot_b = _resample_means(a, b, False, 50, None, (idx_a, idx_b, idx_x))
    naive_a = [a[np.ix_(s, x)].mean() for s, x in zip(idx_a, idx_x)]
    naive_b = [b[np.ix_(s, x)].mean() for s, x in zip(idx_b, idx_x)]
    np.testing.assert_allclose(boot_a, naive_a, rtol=1e-12)
    np.testing.assert_allclose(boot_b, naive_b, rtol=1e-12)


def test_multi_bootstrap_of_one_example_is_scipys_percentile_bootstrap_of_the_seeds():
    """With one example only seeds vary: the Multi-Bootstrap is then a plain percentile bootstrap
    of the seed values. Different random streams: equal up to Monte-Carlo error, which for a 2.5%
    quantile of 20k resamples is ~0.02 bootstrap standard errors; allow 0.15."""
    values = np.random.default_rng(19).gamma(2.0, size=12)
    ours = multi_bootstrap(values[:, None], n_resamples=20_000, rng_seed=5)
    theirs = scipy_stats.bootstrap((values,), np.mean, method="percentile", n_resamples=20_000,
                                   rng=np.random.default_rng(9))
    tolerance = 0.15 * theirs.standard_error
    assert ours.mean_a == pytest.approx(values.mean())
    assert abs(ours.a_low - theirs.confidence_interval.low) < tolerance
    assert abs(ours.a_high - theirs.confidence_interval.high) < tolerance


def test_identical_arms_cover_zero_and_p_is_not_small():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(10, 200))
    same = multi_bootstrap(a, a.copy(), paired=True, n_resamples=2000)
    assert same.difference_low <= 0 <= same.difference_high and same.p_value == 1.0
    # the same runs as two unpaired arms (seeds drawn independently): delta* is centred on 0
    unpaired = multi_bootstrap(a, a[::-1].copy(), paired=False, n_resamples=2000)
    assert unpaired.difference == pytest.approx(0.0, abs=1e-12)
    assert unpaired.difference_low < 0 < unpaired.difference_high
    assert unpaired.p_value > 0.6  # two-sided
    one_sided = multi_bootstrap(a, a[::-1].copy(), paired=False, n_resamples=2000,
                                alternative="greater")
    assert 0.3 < one_sided.p_value < 0.7


def test_clearly_better_arm_gets_small_p():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(10, 200))
    b = a + 0.3 + 0.1 * rng.normal(size=a.shape)
    result = multi_bootstrap(a, b, paired=True, n_resamples=2000)
    assert result.p_value < 0.01 and result.difference_low > 0
    reversed_ = multi_bootstrap(b, a, paired=True, n_resamples=2000, alternative="greater")
    assert reversed_.p_value > 0.99  # H0 mean_b - mean_a <= 0 is true here
    assert multi_bootstrap(b, a, paired=True, n_resamples=2000).p_value < 0.01  # two-sided


def test_p_values_are_floored_at_one_over_the_resamples_and_answer_the_question_asked():
    """The issue's case: a loss that is clearly LOWER in B. The old one-sided test (H0 B - A <= 0)
    answered p = 1 beside an interval far below 0; each alternative now says what it tests."""
    rng = np.random.default_rng(12)
    a = 3.0 + 0.1 * rng.normal(size=(5, 300))
    b = a - 0.227 + 0.01 * rng.normal(size=a.shape)
    runs = {alt: multi_bootstrap(a, b, paired=True, n_resamples=1000, alternative=alt)
            for alt in ("two-sided", "less", "greater")}
    assert runs["two-sided"].difference_high < 0
    assert runs["two-sided"].p_value == runs["less"].p_value == 1 / 1000  # never 0: the floor
    assert runs["greater"].p_value == 1.0  # "is B higher?" -- no
    assert runs["less"].hypothesis == "one-sided test of B - A >= 0 against B - A < 0"
    assert runs["greater"].hypothesis == "one-sided test of B - A <= 0 against B - A > 0"
    text = runs["two-sided"].format()
    assert "p <= 0.001 (two-sided test of B - A = 0; the floor, 1 / 1000 resamples)" in text
    # away from the floor, two-sided is twice the smaller one-sided p (same resamples)
    close = a + 0.002 + 0.1 * rng.normal(size=a.shape)
    noisy = {alt: multi_bootstrap(a, close, paired=True, n_resamples=1000, alternative=alt,
                                  rng_seed=4) for alt in ("two-sided", "less", "greater")}
    smaller = min(noisy["less"].p_value, noisy["greater"].p_value)
    assert 1 / 1000 < smaller < 0.5
    assert noisy["two-sided"].p_value == pytest.approx(min(1.0, 2 * smaller))
    with pytest.raises(ZooError, match=r"unknown alternative 'bigger'.*two-sided.*less.*greater"):
        multi_bootstrap(a, b, paired=True, alternative="bigger")


def test_single_arm_has_mean_and_interval_only():
    a = np.random.default_rng(4).normal(size=(6, 50))
    result = multi_bootstrap(a, n_resamples=1000)
    assert result.a_low < result.mean_a < result.a_high
    assert result.mean_b is None and result.p_value is None and result.difference is None
    assert result.alternative is None and result.hypothesis == "" and result.note == ""
    assert "few seeds (3 in arm a" in multi_bootstrap(a[:3], n_resamples=100).note


def test_paired_mismatched_seeds_are_named():
    a, b = np.zeros((3, 4)), np.zeros((3, 4))
    with pytest.raises(ZooError, match=r"only in a: \[3\], only in b: \[5\]"):
        multi_bootstrap(a, b, paired=True, seeds_a=[1, 2, 3], seeds_b=[1, 2, 5])
    with pytest.raises(ZooError, match=r"a has 3 seed rows, b has 2"):
        multi_bootstrap(a, b[:2], paired=True)
    with pytest.raises(ZooError, match=r"say paired=True"):
        multi_bootstrap(a, b)


def test_paired_rows_are_matched_by_seed_label():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(4, 30))
    b = a + 1.0
    shuffled = multi_bootstrap(
        a, b[::-1], paired=True, seeds_a=[1, 2, 3, 4], seeds_b=[4, 3, 2, 1], n_resamples=500
    )
    assert shuffled.difference_low == pytest.approx(1.0) == shuffled.difference_high


def test_multi_bootstrap_single_seed_and_nan():
    with pytest.raises(ZooError, match=r"at least 2 seeds, got 1 in arm a"):
        multi_bootstrap(np.zeros((1, 5)))
    a = np.arange(12, dtype=float).reshape(3, 4)
    a[1, 2] = np.nan
    with pytest.raises(ZooError, match=r"1 score\(s\) are NaN.*arm a seed 1 example 2"):
        multi_bootstrap(a)
    result = multi_bootstrap(a, nan_policy="omit", n_resamples=100)
    assert result.omitted_examples == (2,) and result.n_examples == 3


def test_multi_bootstrap_is_reproducible_from_its_seed():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(25, 1000)), rng.normal(size=(25, 1000))
    first = multi_bootstrap(a, b, paired=True, n_resamples=10_000, rng_seed=1)
    assert first == multi_bootstrap(a, b, paired=True, n_resamples=10_000, rng_seed=1)
    assert first != multi_bootstrap(a, b, paired=True, n_resamples=10_000, rng_seed=2)


# ---------------------------------------------------------------- values near the float64 limit


@pytest.mark.parametrize("method", ["t", "percentile", "bca"])
def test_means_of_values_near_the_float64_limit_do_not_overflow(method):
    with np.errstate(all="raise"):  # no overflow anywhere on the way
        huge = seed_interval([1e308, 1e308, 1e308], method=method)
        assert (huge.mean, huge.low, huge.high) == (1e308, 1e308, 1e308)
        if method == "t":  # its end points lie beyond the largest float: said, never inf
            with pytest.raises(ZooError, match=r"beyond the float64 range.*method='percentile'"):
                seed_interval([1.5e308, -1e308, 1.2e308], method=method)
        else:
            mixed = seed_interval([1.5e308, -1e308, 1.2e308], method=method)
            assert np.isfinite([mixed.mean, mixed.low, mixed.high]).all()
            assert mixed.low <= mixed.mean <= mixed.high
        near = seed_interval([1.1e307, 1.3e307, 1.2e307], method=method)
        assert near.low < near.mean < near.high and near.mean == pytest.approx(1.2e307)
        curve = seed_intervals({"step": [1, 1, 1, 2, 2, 2], "seed": [1, 2, 3] * 2,
                                "value": [1e308] * 3 + [2.0, 3.0, 4.0]}, method=method)
        assert list(curve.means) == [1e308, 3.0]
        scores = np.full((3, 4), 1e308)
        assert multi_bootstrap(scores).mean_a == 1e308
        assert multi_bootstrap(scores, scores / 2, paired=True).difference == -5e307


def test_a_difference_beyond_float64_is_one_clear_error():
    scores = np.full((3, 4), 1e308)
    with pytest.raises(ZooError, match="overflows float64.*rescale"):
        multi_bootstrap(scores, -scores, paired=False)
