"""When does something happen during training, and how much does that vary across seeds?

An "event" is read off one metric curve (values at stored steps): either the first step where
the metric crosses a threshold, or the step with the largest jump between consecutive stored
points (e.g. the induction bump: the ICL score drops sharply once induction heads form).
Per-seed event steps then get a median, a spread and a bootstrap interval of the mean step.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from zoo_common.errors import ZooError
from zoo.stats._resample import integer_steps, real_array
from zoo.stats.seed_intervals import seed_interval

KINDS = ("threshold", "largest_jump")
DIRECTIONS = ("above", "below")
NO_EVENT_POLICIES = ("raise", "omit")


@dataclass(frozen=True)
class EventTiming:
    """Event step of each seed and their spread; no_event_seeds never showed the event."""

    seeds: tuple
    event_steps: tuple[int, ...]
    median: float
    q1: float
    q3: float
    iqr: float
    min: int
    max: int
    mean: float
    mean_low: float
    mean_high: float
    confidence: float
    no_event_seeds: tuple = ()


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


def event_step(
    steps: Sequence[int],
    values: Sequence[float],
    *,
    kind: str = "threshold",
    threshold: float | None = None,
    direction: str = "above",
) -> int | None:
    """The step at which the curve shows the event, or None if it never does.

    kind="threshold": the first stored step whose value is >= threshold (direction="above") or
    <= threshold (direction="below"). kind="largest_jump": the step right AFTER the largest rise
    (direction="above") or fall ("below") between consecutive stored points, i.e. the first
    stored step at which the jump is visible. The jump is the raw difference between stored
    points, not divided by the gap in steps: on a log-spaced schedule that is a change per
    log-step, which is what finds a phase change. None: no crossing, or no rise/fall at all.
    """
    if kind not in KINDS:
        raise ZooError(f"unknown event kind {kind!r}; choose one of {', '.join(KINDS)}")
    if direction not in DIRECTIONS:
        raise ZooError(f"unknown direction {direction!r}; choose one of {', '.join(DIRECTIONS)}")
    steps, values = _curve(steps, values, "event_step")
    if kind == "threshold":
        if threshold is None:
            raise ZooError("kind='threshold' needs threshold=<number>")
        if (isinstance(threshold, bool) or not isinstance(threshold, numbers.Real)
                or not np.isfinite(threshold)):
            raise ZooError(f"threshold must be a finite number, got {threshold!r}")
        hits = values >= threshold if direction == "above" else values <= threshold
        return int(steps[np.argmax(hits)]) if hits.any() else None
    if threshold is not None:
        raise ZooError("kind='largest_jump' takes no threshold (it finds the largest change)")
    if len(steps) < 2:
        raise ZooError("kind='largest_jump' needs at least 2 stored steps")
    jumps = np.diff(values) if direction == "above" else -np.diff(values)
    best = int(np.argmax(jumps))
    return int(steps[best + 1]) if jumps[best] > 0 else None


def event_timing(
    steps: Sequence[int],
    per_seed_values,
    *,
    seeds: Sequence | None = None,
    kind: str = "threshold",
    threshold: float | None = None,
    direction: str = "above",
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    rng_seed: int = 0,
    no_event: str = "raise",
) -> EventTiming:
    """Event step per seed (see event_step) with median, IQR, min-max and a CI of the mean.

    per_seed_values: [n_seeds, n_steps], one curve per seed on the shared steps. A seed whose
    curve never shows the event is an error by default (dropping it would make the event look
    earlier and surer than it is); no_event="omit" leaves it out and lists it in no_event_seeds.
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
    labels = list(range(curves.shape[0])) if seeds is None else list(seeds)
    if len(labels) != curves.shape[0]:
        raise ZooError(f"{curves.shape[0]} curves but {len(labels)} seed labels")
    repeated = sorted({str(x) for x in labels if labels.count(x) > 1})
    if repeated:
        raise ZooError(f"seed label(s) {', '.join(repeated)} appear more than once; one curve per seed")
    found, missing = {}, []
    for label, curve in zip(labels, curves):
        try:
            step = event_step(steps, curve, kind=kind, threshold=threshold, direction=direction)
        except ZooError as error:
            raise ZooError(f"seed {label}: {error}") from None
        if step is None:
            missing.append(label)
        else:
            found[label] = step
    if missing and no_event == "raise":
        raise ZooError(
            f"seed(s) {missing} never show the event ({kind}, {direction}"
            f"{'' if threshold is None else f', threshold {threshold}'}); pass "
            "no_event='omit' to time the others and list these in no_event_seeds"
        )
    at = np.array(list(found.values()), dtype=np.float64)
    interval = seed_interval(
        at, seeds=list(found), confidence=confidence, n_resamples=n_resamples, rng_seed=rng_seed
    )
    q1, median, q3 = np.quantile(at, [0.25, 0.5, 0.75])
    return EventTiming(
        seeds=tuple(found),
        event_steps=tuple(found.values()),
        median=float(median),
        q1=float(q1),
        q3=float(q3),
        iqr=float(q3 - q1),
        min=int(at.min()),
        max=int(at.max()),
        mean=interval.mean,
        mean_low=interval.low,
        mean_high=interval.high,
        confidence=confidence,
        no_event_seeds=tuple(missing),
    )
