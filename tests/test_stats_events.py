"""zoo.stats event timing: an event's step per seed (a threshold crossed, the largest jump above
the noise) and its spread over seeds."""

import numpy as np
import pytest
from scipy import stats as scipy_stats

from zoo.stats import event_step, event_timing, find_event
from zoo_common.errors import ZooError

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


def test_settle_is_where_a_curve_stays_at_its_final_value_and_none_while_it_moves():
    steps = np.arange(0, 1000, 50)
    count = np.array([2, 3, 3, 4, 3, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5], dtype=float)
    assert event_step(steps, count, kind="settle", persist=10) == 400
    assert event_step(steps, count, kind="settle", persist=13) is None  # held for 12 steps only
    still_moving = count.copy()
    still_moving[-1] = 6
    assert event_step(steps, still_moving, kind="settle", persist=2) is None
    noisy = count + 0.01 * np.sin(np.arange(len(count)))
    assert event_step(steps, noisy, kind="settle", persist=3, tolerance=0.05) == 400
    timing = event_timing(steps, np.stack([count, still_moving]), kind="settle", persist=5,
                          no_event="nan")
    assert timing.event_steps == (400, None) and "stays within 0 of its final value" in timing.description
    with pytest.raises(ZooError, match="takes tolerance="):
        event_step(steps, count, kind="settle", threshold=1.0)
