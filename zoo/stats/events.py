"""When does something happen during training, and how much does that vary across seeds?

An "event" is read off one metric curve (values at stored steps): either the first step where
the metric crosses a threshold (optionally staying past it for `persist` stored steps), or the
step with the largest jump between consecutive stored points (e.g. the induction bump: the ICL
score drops sharply once induction heads form). Every curve has some largest jump, so a jump only
counts as an event when it stands out from the curve's own step-to-step noise: the robust spread
(median absolute deviation, scaled to a standard deviation) of its other changes. Per-seed event
steps then get a median, a spread and an interval of the mean step.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from zoo.stats._inputs import integer_steps, real_array
from zoo.stats.seed_intervals import few_seeds_note, seed_interval
from zoo_common.errors import ZooError

KINDS = ("threshold", "largest_jump", "settle")
DIRECTIONS = ("above", "below")
NO_EVENT_POLICIES = ("raise", "omit", "nan")
# The default bar for a largest jump, in units of the curve's step-to-step noise: high enough that
# curves of pure noise rarely pass it (the noise scale itself is estimated from a few changes).
MIN_JUMP_OVER_NOISE = 6.0
# Stored steps needed to estimate that noise: the jump's change plus at least 6 others.
MIN_NOISE_STEPS = 8
_MAD_TO_SD = 1.482602218505602  # 1 / Phi^-1(3/4): the MAD of normal data times this is its sd


@dataclass(frozen=True)
class Event:
    """One curve's event. step: None when there is none. jump: the change into the event step
    (for largest_jump without an event: into the largest candidate), counted in the asked
    direction (a rise for "above", a fall for "below" is positive). noise: the robust standard
    deviation of the curve's other step-to-step changes. jump_over_noise: how far the jump stands
    out from those changes (from their median, in units of noise); NaN where it cannot be
    measured (no stored step before the event, or too few steps to know the noise)."""

    step: int | None
    jump: float
    noise: float
    jump_over_noise: float


@dataclass(frozen=True)
class EventTiming:
    """Event step of each seed and their spread; no_event_seeds never showed the event.

    jump_over_noise: each seed's event size relative to its curve's noise, aligned with seeds.
    Under no_event="nan" every seed is in seeds, with None in event_steps where it has no event.
    With fewer than 2 seeds showing the event there is no interval (NaN), and with none no
    statistic at all (NaN, min and max None): on curves without the event, that is the answer.
    """

    seeds: tuple
    event_steps: tuple
    median: float
    q1: float
    q3: float
    iqr: float
    min: int | None  # None when no seed shows the event
    max: int | None
    mean: float
    mean_low: float
    mean_high: float
    confidence: float
    no_event_seeds: tuple = ()
    jump_over_noise: tuple = ()
    kind: str = "threshold"
    description: str = ""  # the event in words, e.g. "largest fall of at least 6x the noise"
    method: str = "t"  # how mean_low / mean_high were made (see seed_interval)

    @property
    def n_events(self) -> int:
        """How many seeds show the event (the seeds the statistics are over)."""
        return sum(step is not None for step in self.event_steps)

    @property
    def n_no_event(self) -> int:
        return len(self.no_event_seeds)

    @property
    def note(self) -> str:
        """In words, what the number of seeds with the event means for the interval."""
        if self.n_events < 2:
            return (f"{'no seed shows' if self.n_events == 0 else 'only 1 seed shows'} the "
                    "event: no interval over seeds")
        return few_seeds_note(self.n_events, self.method)

    def format(self) -> str:
        """A few lines: how many seeds show the event, its steps' spread, its size per seed."""
        total = self.n_events + self.n_no_event
        missing = (f"; no event in seed(s) {', '.join(map(str, self.no_event_seeds))}"
                   if self.no_event_seeds else "")
        shown = [(seed, size) for seed, step, size in
                 zip(self.seeds, self.event_steps, self.jump_over_noise) if step is not None]
        lines = [f"{self.description}: {self.n_events} of {total} seeds{missing}"]
        if self.n_events:
            lines.append(
                f"  step: median {self.median:g}, IQR {self.q1:g}-{self.q3:g}, range {self.min}-"
                f"{self.max}; mean {self.mean:.4g} [{self.mean_low:.4g}, {self.mean_high:.4g}] "
                f"({self.confidence:.0%} {self.method} interval over {self.n_events} seeds)")
        if shown:
            lines.append("  size relative to the step-to-step noise: "
                         + ", ".join(f"seed {seed} {size:.3g}x" for seed, size in shown))
        if self.note:
            lines.append(f"  note: {self.note}")
        return "\n".join(lines)

    __str__ = format


def _curve(steps, values, what: str) -> tuple[np.ndarray, np.ndarray]:
    steps = integer_steps(steps, what)
    values = real_array(values, f"{what}: values")
    if steps.ndim != 1 or values.shape != steps.shape:
        raise ZooError(
            f"{what}: steps and values must be 1-D and of equal length, got shapes "
            f"{steps.shape} and {values.shape}"
        )
    if len(steps) == 0:
        raise ZooError(f"{what}: the curve is empty")
    order = np.argsort(steps, kind="stable")
    steps, values = steps[order], values[order]
    if (np.diff(steps) == 0).any():
        raise ZooError(
            f"{what}: step(s) {sorted(set(steps[1:][np.diff(steps) == 0].tolist()))} "
            "appear more than once; give one value per step"
        )
    bad = ~np.isfinite(values)
    if bad.any():
        raise ZooError(
            f"{what}: NaN or infinite value at step(s) {steps[bad].tolist()}; an "
            "event read off a broken curve would be wrong, so fix or drop those points"
        )
    return steps, values


def _size(changes: np.ndarray, at: int, values: np.ndarray) -> tuple[float, float]:
    """(noise, jump_over_noise) of changes[at] against the curve's other changes (NaN, NaN when
    fewer than MIN_NOISE_STEPS - 2 others). Robust: median and MAD, so neither the jump itself
    nor a second one moves the noise scale much."""
    others = np.delete(changes, at)
    if len(others) < MIN_NOISE_STEPS - 2:
        return float("nan"), float("nan")
    typical = np.median(others)
    noise = _MAD_TO_SD * float(np.median(np.abs(others - typical)))
    # a floor at rounding level, so a noiseless straight line has no "infinitely large" wiggle
    floor = 16 * np.finfo(np.float64).eps * float(np.max(np.abs(values)))
    excess = float(changes[at] - typical)
    spread = max(noise, floor)
    return noise, (excess / spread if spread > 0 else (np.inf if excess > 0 else 0.0))


def _check_number(value, name: str, *, minimum: float) -> None:
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not np.isfinite(value) or value < minimum):
        raise ZooError(f"{name} must be a finite number >= {minimum:g}, got {value!r}")


def find_event(
    steps: Sequence[int],
    values: Sequence[float],
    *,
    kind: str = "threshold",
    threshold: float | None = None,
    direction: str = "above",
    persist: int = 1,
    min_jump_over_noise: float | None = MIN_JUMP_OVER_NOISE,
    tolerance: float = 0.0,
) -> Event:
    """The event of one curve with its size relative to the curve's noise (see event_step)."""
    if kind not in KINDS:
        raise ZooError(f"unknown event kind {kind!r}; choose one of {', '.join(KINDS)}")
    if direction not in DIRECTIONS:
        raise ZooError(f"unknown direction {direction!r}; choose one of {', '.join(DIRECTIONS)}")
    if isinstance(persist, bool) or not isinstance(persist, numbers.Integral) or persist < 1:
        raise ZooError(f"persist must be a whole number of stored steps >= 1, got {persist!r}")
    if min_jump_over_noise is not None:
        _check_number(min_jump_over_noise, "min_jump_over_noise", minimum=0.0)
    steps, values = _curve(steps, values, "event_step")
    changes = np.diff(values) if direction == "above" else -np.diff(values)
    if kind == "settle":
        if threshold is not None:
            raise ZooError("kind='settle' takes tolerance= (how close to the final value), not "
                           "threshold")
        return _settle(steps, values, tolerance=tolerance, persist=persist)
    if kind == "threshold":
        if threshold is None:
            raise ZooError("kind='threshold' needs threshold=<number>")
        if (isinstance(threshold, bool) or not isinstance(threshold, numbers.Real)
                or not np.isfinite(threshold)):
            raise ZooError(f"threshold must be a finite number, got {threshold!r}")
        hits = values >= threshold if direction == "above" else values <= threshold
        # runs of `persist` stored steps all past the threshold, by a sliding window sum
        window = np.convolve(hits.astype(np.int64), np.ones(int(persist), np.int64), "valid")
        held = np.flatnonzero(window == persist)
        if len(held) == 0:
            return Event(None, float("nan"), float("nan"), float("nan"))
        at = int(held[0])
        if at == 0:  # no stored step before it: no change to measure
            return Event(int(steps[0]), float("nan"), float("nan"), float("nan"))
        noise, size = _size(changes, at - 1, values)
        return Event(int(steps[at]), float(changes[at - 1]), noise, size)
    if threshold is not None:
        raise ZooError("kind='largest_jump' takes no threshold (it finds the largest change)")
    if persist != 1:
        raise ZooError("persist applies to kind='threshold' (a crossing that must hold); "
                       "kind='largest_jump' takes none")
    if len(steps) < 2:
        raise ZooError("kind='largest_jump' needs at least 2 stored steps")
    if min_jump_over_noise is not None and len(steps) < MIN_NOISE_STEPS:
        raise ZooError(
            f"kind='largest_jump' weighs the largest jump against the curve's other "
            f"step-to-step changes, which needs at least {MIN_NOISE_STEPS} stored steps; got "
            f"{len(steps)}. Store more steps, or pass min_jump_over_noise=None to take the "
            "largest jump however small"
        )
    best = int(np.argmax(changes))
    noise, size = _size(changes, best, values)
    jump = float(changes[best])
    found = jump > 0 and (min_jump_over_noise is None or size >= min_jump_over_noise)
    return Event(int(steps[best + 1]) if found else None, jump, noise, size)


def _settle(steps: np.ndarray, values: np.ndarray, *, tolerance: float, persist: int) -> Event:
    """The first stored step from which the curve stays within `tolerance` of its last value to
    the end; None when that stretch is shorter than `persist` stored steps (no evidence that it
    settled: it may still be moving at the end of training)."""
    _check_number(tolerance, "tolerance", minimum=0.0)
    off = np.flatnonzero(np.abs(values - values[-1]) > tolerance)
    at = int(off[-1]) + 1 if len(off) else 0
    if len(values) - at < persist:
        return Event(None, float("nan"), float("nan"), float("nan"))
    jump = float(values[at] - values[at - 1]) if at > 0 else float("nan")
    return Event(int(steps[at]), jump, float("nan"), float("nan"))


def event_step(
    steps: Sequence[int],
    values: Sequence[float],
    *,
    kind: str = "threshold",
    threshold: float | None = None,
    direction: str = "above",
    persist: int = 1,
    min_jump_over_noise: float | None = MIN_JUMP_OVER_NOISE,
    tolerance: float = 0.0,
) -> int | None:
    """The step at which the curve shows the event, or None if it never does.

    kind="threshold": the first stored step whose value is >= threshold (direction="above") or
    <= threshold (direction="below") and stays so for `persist` stored steps in a row, so a
    one-step blip is not taken for a transition (a crossing in the last persist - 1 stored steps
    cannot be confirmed and does not count). kind="largest_jump": the step right AFTER the
    largest rise (direction="above") or fall ("below") between consecutive stored points, i.e.
    the first stored step at which the jump is visible, when that jump stands out from the
    curve's other changes by at least min_jump_over_noise times their robust standard deviation
    (None: any rise or fall counts); this needs MIN_NOISE_STEPS stored steps. The jump is the raw
    difference between stored points, not divided by the gap in steps: on a log-spaced schedule
    that is a change per log-step, which is what finds a phase change. kind="settle": the first
    stored step from which the curve stays within `tolerance` of its final value to the end, held
    for at least `persist` stored steps (else None: it may still be moving). find_event also gives
    the event's size relative to the noise.
    """
    return find_event(steps, values, kind=kind, threshold=threshold, direction=direction,
                      persist=persist, min_jump_over_noise=min_jump_over_noise,
                      tolerance=tolerance).step


def _describe(kind, threshold, direction, persist, min_jump_over_noise, tolerance=0.0) -> str:
    if kind == "settle":
        return (f"first step from which it stays within {tolerance:g} of its final value, for at "
                f"least {persist} stored steps")
    if kind == "threshold":
        held = f" for {persist} stored steps" if persist > 1 else ""
        past = "at or above" if direction == "above" else "at or below"
        return f"first step {past} {threshold:g}{held}"
    change = "rise" if direction == "above" else "fall"
    if min_jump_over_noise is None:
        return f"largest {change}"
    return f"largest {change}, if at least {min_jump_over_noise:g}x the step-to-step noise"


def event_timing(
    steps: Sequence[int],
    per_seed_values,
    *,
    seeds: Sequence | None = None,
    kind: str = "threshold",
    threshold: float | None = None,
    direction: str = "above",
    persist: int = 1,
    min_jump_over_noise: float | None = MIN_JUMP_OVER_NOISE,
    tolerance: float = 0.0,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    rng_seed: int = 0,
    method: str = "t",
    no_event: str = "raise",
) -> EventTiming:
    """Event step per seed (see event_step) with median, IQR, min-max and a CI of the mean.

    per_seed_values: [n_seeds, n_steps], one curve per seed on the shared steps. A seed whose
    curve never shows the event is an error by default (dropping it would make the event look
    earlier and surer than it is); no_event="omit" leaves it out of the statistics and lists it
    in no_event_seeds; no_event="nan" does the same but keeps every seed in seeds, with None as
    its event step and NaN as its size (with "omit" or "nan", seeds without the event are never
    an error: "no event in 9 of 10 seeds" is a finding). method: the interval of the mean (see
    seed_interval).
    """
    if no_event not in NO_EVENT_POLICIES:
        raise ZooError(
            f"unknown no_event policy {no_event!r}; choose one of {', '.join(NO_EVENT_POLICIES)}"
        )
    curves = real_array(per_seed_values, "per_seed_values (one curve per seed, all of one length)")
    if curves.ndim != 2 or curves.shape[1] != len(steps):
        raise ZooError(
            f"per_seed_values must be [n_seeds, n_steps] = [?, {len(steps)}], got "
            f"shape {curves.shape}"
        )
    if curves.shape[0] == 0:
        raise ZooError("per_seed_values holds no curves; give one curve per seed")
    labels = list(range(curves.shape[0])) if seeds is None else list(seeds)
    if len(labels) != curves.shape[0]:
        raise ZooError(f"{curves.shape[0]} curves but {len(labels)} seed labels")
    repeated = sorted({str(x) for x in labels if labels.count(x) > 1})
    if repeated:
        raise ZooError(f"seed label(s) {', '.join(repeated)} appear more than once; one curve per seed")
    events = {}
    for label, curve in zip(labels, curves):
        try:
            events[label] = find_event(steps, curve, kind=kind, threshold=threshold,
                                       direction=direction, persist=persist,
                                       min_jump_over_noise=min_jump_over_noise,
                                       tolerance=tolerance)
        except ZooError as error:
            raise ZooError(f"seed {label}: {error}") from None
    found = {label: e for label, e in events.items() if e.step is not None}
    missing = [label for label, e in events.items() if e.step is None]
    what = _describe(kind, threshold, direction, persist, min_jump_over_noise, tolerance)
    near = ""
    if missing and kind == "largest_jump" and min_jump_over_noise is not None:
        near = (" (their largest jumps: " + ", ".join(
            f"{events[s].jump_over_noise:.3g}x" for s in missing[:10]) + " the noise)")
    if missing and no_event == "raise":
        raise ZooError(
            f"seed(s) {missing} never show the event ({kind}, {direction}"
            f"{'' if threshold is None else f', threshold {threshold}'}: {what}){near}; pass "
            "no_event='omit' to time the others and list these in no_event_seeds"
        )
    at = np.array([e.step for e in found.values()], dtype=np.float64)
    nan = float("nan")
    if len(found) >= 2:
        interval = seed_interval(at, seeds=list(found), confidence=confidence,
                                 n_resamples=n_resamples, rng_seed=rng_seed, method=method)
        mean, low, high = interval.mean, interval.low, interval.high
    else:  # no spread over one seed (or none): that is the answer, said in the result
        mean, low, high = (float(at[0]) if len(at) else nan), nan, nan
    q1, median, q3 = np.quantile(at, [0.25, 0.5, 0.75]) if len(at) else (nan, nan, nan)
    shown = events if no_event == "nan" else found
    return EventTiming(
        seeds=tuple(shown),
        event_steps=tuple(e.step for e in shown.values()),
        median=float(median),
        q1=float(q1),
        q3=float(q3),
        iqr=float(q3 - q1),
        min=int(at.min()) if len(at) else None,
        max=int(at.max()) if len(at) else None,
        mean=mean,
        mean_low=low,
        mean_high=high,
        confidence=confidence,
        no_event_seeds=tuple(missing),
        jump_over_noise=tuple(e.jump_over_noise if e.step is not None else float("nan")
                              for e in shown.values()),
        kind=kind,
        description=what,
        method=method,
    )
