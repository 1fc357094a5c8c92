"""zoo.stats: intervals over seeds, the Multi-Bootstrap, event timing."""

import itertools

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats as scipy_stats

from zoo_common.errors import ZooError
from zoo.stats import (
    event_step,
    event_timing,
    find_event,
    multi_bootstrap,
    seed_interval,
    seed_intervals,
)
from zoo.stats._student_t import t_cdf, t_ppf
from zoo.stats.multi_bootstrap import _resample_means

# ---------------------------------------------------------------- interval over seeds


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_seed_interval_agrees_with_scipy_within_monte_carlo_error(method):
    values = np.random.default_rng(7).gamma(2.0, size=15)  # skewed, so BCa != percentile
    ours = seed_interval(values, method=method, n_resamples=20_000, rng_seed=123)
    theirs = scipy_stats.bootstrap(
        (values,),
        np.mean,
        method=method.upper() if method == "bca" else method,
        n_resamples=20_000,
        rng=np.random.default_rng(9),
    )
    # Different random streams: the end points differ only by Monte-Carlo error, which for a
    # 2.5% quantile of 20k resamples is ~0.02 bootstrap standard errors; allow 0.15.
    tolerance = 0.15 * theirs.standard_error
    assert ours.mean == pytest.approx(values.mean())
    assert abs(ours.low - theirs.confidence_interval.low) < tolerance
    assert abs(ours.high - theirs.confidence_interval.high) < tolerance
    assert ours.n_seeds == 15 and ours.method == method


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


@pytest.mark.parametrize("level", [0.975, 0.995])
def test_t_quantile_matches_scipy(level):
    for df in range(1, 31):
        assert t_ppf(level, df) == pytest.approx(scipy_stats.t.ppf(level, df), abs=1e-6, rel=0)
        assert t_ppf(1 - level, df) == pytest.approx(-t_ppf(level, df), abs=1e-12)
        assert t_cdf(t_ppf(level, df), df) == pytest.approx(level, abs=1e-12)
    for df in (0.5, 2.5, 100, 10_000):  # and off the integers, far out, and nearly normal
        assert t_ppf(0.9995, df) == pytest.approx(scipy_stats.t.ppf(0.9995, df), rel=1e-9)


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


# ---------------------------------------------------------------- events


STEPS = np.array([0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024])


def _bump(at: int, low: float = 3.0, high: float = 1.0) -> np.ndarray:
    """A loss-like curve that falls from low to high between the stored step before `at` and `at`."""
    return np.where(STEPS >= at, high, low) + 0.01 * np.log1p(STEPS)


def test_event_step_on_known_curves():
    curve = _bump(128)
    assert event_step(STEPS, curve, kind="largest_jump", direction="below") == 128
    assert event_step(STEPS, curve, threshold=2.0, direction="below") == 128
    assert event_step(STEPS, -curve, threshold=-2.0, direction="above") == 128
    assert event_step(STEPS, curve, threshold=0.5, direction="below") is None
    assert event_step(STEPS[::-1], curve[::-1], kind="largest_jump", direction="below") == 128


def test_event_step_bad_input():
    with pytest.raises(ZooError, match=r"needs threshold"):
        event_step(STEPS, _bump(4))
    with pytest.raises(ZooError, match=r"unknown event kind 'bump'.*threshold, largest_jump"):
        event_step(STEPS, _bump(4), kind="bump")
    curve = _bump(4)
    curve[3] = np.nan
    with pytest.raises(ZooError, match=r"NaN or infinite value at step\(s\) \[4\]"):
        event_step(STEPS, curve, threshold=1.0)


def test_event_timing_across_seeds():
    curves = np.stack([_bump(at) for at in (64, 128, 128, 256, 512)])
    timing = event_timing(
        STEPS,
        curves,
        seeds=[1, 2, 3, 4, 5],
        kind="largest_jump",
        direction="below",
        n_resamples=2000,
    )
    assert timing.event_steps == (64, 128, 128, 256, 512)
    assert (timing.median, timing.q1, timing.q3, timing.min, timing.max) == (128, 128, 256, 64, 512)
    assert timing.mean == pytest.approx(217.6)
    # the default t interval of the mean: mean +- t(4) sd / sqrt(5), which may reach past the data
    half = scipy_stats.t.ppf(0.975, 4) * np.std(timing.event_steps, ddof=1) / np.sqrt(5)
    assert (timing.mean_low, timing.mean_high) == pytest.approx((217.6 - half, 217.6 + half))
    assert timing.n_events == 5 and timing.n_no_event == 0 and timing.method == "t"
    assert all(size > 100 for size in timing.jump_over_noise)  # a 2.0 fall on a 0.001-noise curve
    bootstrap = event_timing(STEPS, curves, kind="largest_jump", direction="below",
                             method="percentile", n_resamples=2000)
    assert 64 <= bootstrap.mean_low < bootstrap.mean < bootstrap.mean_high <= 512


def test_event_timing_seed_without_event_is_reported():
    curves = np.stack([_bump(64), _bump(128), np.full(len(STEPS), 3.0), _bump(256)])
    with pytest.raises(ZooError, match=r"seed\(s\) \[7\] never show the event"):
        event_timing(STEPS, curves, seeds=[5, 6, 7, 8], threshold=2.0, direction="below")
    timing = event_timing(
        STEPS,
        curves,
        seeds=[5, 6, 7, 8],
        threshold=2.0,
        direction="below",
        no_event="omit",
        n_resamples=500,
    )
    assert timing.no_event_seeds == (7,) and timing.seeds == (5, 6, 8)
    assert timing.n_no_event == 1 and timing.n_events == 3
    assert "3 of 4 seeds; no event in seed(s) 7" in timing.format()
    kept = event_timing(STEPS, curves, seeds=[5, 6, 7, 8], threshold=2.0, direction="below",
                        no_event="nan")
    assert kept.seeds == (5, 6, 7, 8) and kept.event_steps == (64, 128, None, 256)
    assert np.isnan(kept.jump_over_noise[2]) and kept.mean == timing.mean
    with pytest.raises(ZooError, match=r"unknown no_event policy 'drop'.*raise, omit, nan"):
        event_timing(STEPS, curves, threshold=2.0, no_event="drop")


# The default checkpoint schedule: step 0, log-spaced 1..512, then every 128 steps.
SCHEDULE = np.concatenate([[0], 2 ** np.arange(10), np.arange(640, 2049, 128)])


@pytest.mark.parametrize("grid", [STEPS, SCHEDULE], ids=["log-spaced", "log-then-linear"])
@pytest.mark.parametrize("direction", ["above", "below"])
def test_pure_noise_curves_rarely_show_a_largest_jump(grid, direction):
    curves = np.random.default_rng(13).normal(size=(200, len(grid)))
    timing = event_timing(grid, curves, kind="largest_jump", direction=direction,
                          no_event="omit")
    assert timing.n_events + timing.n_no_event == 200
    assert timing.n_events <= 20  # at most 10% of pure-noise seeds get an "event"
    assert all(size >= 6.0 for size in timing.jump_over_noise)
    # without the noise bar, every noise curve has some largest rise: the old behaviour
    raw = event_timing(grid, curves, kind="largest_jump", direction=direction,
                       min_jump_over_noise=None, no_event="omit")
    assert raw.n_events == 200


def test_clear_step_changes_are_all_found_at_their_stored_step():
    rng = np.random.default_rng(14)
    at = rng.integers(1, len(SCHEDULE), size=60)  # every stored step but 0 can hold the jump
    curves = 0.01 * rng.normal(size=(60, len(SCHEDULE))) + (np.arange(len(SCHEDULE)) >= at[:, None])
    rising = event_timing(SCHEDULE, curves, kind="largest_jump", direction="above")
    found = np.searchsorted(SCHEDULE, rising.event_steps)
    assert rising.n_no_event == 0 and np.abs(found - at).max() <= 1  # within one stored interval
    assert min(rising.jump_over_noise) > 20
    falling = event_timing(SCHEDULE, -curves, kind="largest_jump", direction="below")
    assert falling.event_steps == rising.event_steps


def test_find_event_reports_the_size_of_the_jump_relative_to_the_noise():
    curve = 0.01 * np.random.default_rng(15).normal(size=len(STEPS)) + (STEPS >= 64)
    event = find_event(STEPS, curve, kind="largest_jump")
    assert event.step == 64 and event.jump == pytest.approx(1.0, abs=0.05)
    assert 0.005 < event.noise < 0.03  # the sd of a difference of two 0.01-noise points: 0.014
    assert event.jump_over_noise == pytest.approx(event.jump / event.noise, rel=0.1)
    crossing = find_event(STEPS, curve, threshold=0.5)  # a threshold event carries it too
    assert crossing.step == 64 and crossing.jump_over_noise == pytest.approx(event.jump_over_noise)
    flat = find_event(STEPS, 0.01 * np.random.default_rng(16).normal(size=len(STEPS)),
                      kind="largest_jump")
    assert flat.step is None and 0 < flat.jump_over_noise < 6  # the candidate, below the bar
    line = find_event(STEPS, 0.5 * np.arange(len(STEPS)), kind="largest_jump")
    assert line.step is None  # a straight line has equal steps: none stands out
    assert find_event(STEPS, np.where(STEPS >= 8, 1.0, 0.0), kind="largest_jump").step == 8


def test_largest_jump_needs_enough_steps_to_know_the_noise():
    with pytest.raises(ZooError, match=r"at least 8 stored steps; got 5.*min_jump_over_noise=None"):
        event_step([0, 1, 2, 4, 8], [0.0, 0.1, 0.0, 1.0, 1.1], kind="largest_jump")
    assert event_step([0, 1, 2, 4, 8], [0.0, 0.1, 0.0, 1.0, 1.1], kind="largest_jump",
                      min_jump_over_noise=None) == 4
    with pytest.raises(ZooError, match=r"min_jump_over_noise must be a finite number >= 0"):
        event_step(STEPS, _bump(8), kind="largest_jump", min_jump_over_noise=-1)


def test_persistence_skips_a_one_step_blip():
    curve = np.where(STEPS >= 256, 1.0, 3.0)
    curve[STEPS == 16] = 1.5  # one stored step below 2.0, then back up
    assert event_step(STEPS, curve, threshold=2.0, direction="below") == 16
    assert event_step(STEPS, curve, threshold=2.0, direction="below", persist=2) == 256
    assert event_step(STEPS, curve, threshold=2.0, direction="below", persist=3) == 256
    # a crossing the stored curve cannot confirm for `persist` steps is not an event
    late = np.where(STEPS >= 1024, 1.0, 3.0)
    assert event_step(STEPS, late, threshold=2.0, direction="below", persist=2) is None
    timing = event_timing(STEPS, np.stack([curve, curve]), threshold=2.0, direction="below",
                          persist=2)
    assert timing.event_steps == (256, 256) and "for 2 stored steps" in timing.description
    with pytest.raises(ZooError, match=r"persist must be a whole number of stored steps >= 1"):
        event_step(STEPS, curve, threshold=2.0, persist=0)
    with pytest.raises(ZooError, match=r"persist applies to kind='threshold'"):
        event_step(STEPS, curve, kind="largest_jump", persist=2)


def test_seeds_without_an_event_are_an_answer_not_a_crash():
    lines = np.arange(len(STEPS)) + 0.01 * np.random.default_rng(18).normal(size=(4, len(STEPS)))
    with pytest.raises(ZooError, match=r"never show the event.*their largest jumps: .*x the noise"):
        event_timing(STEPS, lines, kind="largest_jump")
    none = event_timing(STEPS, lines, kind="largest_jump", no_event="omit")
    assert none.n_events == 0 and none.n_no_event == 4 and none.seeds == ()
    assert np.isnan(none.median) and none.min is None
    assert "0 of 4 seeds" in none.format() and "no seed shows the event" in none.format()
    one = event_timing(STEPS, np.vstack([lines, lines[0] + 50 * (STEPS >= 32)]),
                       kind="largest_jump", no_event="nan")
    assert one.event_steps == (None, None, None, None, 32) and one.mean == 32
    assert np.isnan(one.mean_low) and "only 1 seed shows the event" in one.note


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
