"""Statistics across seeds: intervals over seeds, the Multi-Bootstrap, event timing.

numpy in, frozen dataclasses out; every resampling takes rng_seed, so results are reproducible.
Results say when they cannot say much: few seeds, no event that stands out from the noise, and
which hypothesis a p-value tests.
"""

from zoo.stats.events import Event, EventTiming, event_step, event_timing, find_event
from zoo.stats.multi_bootstrap import MultiBootstrapResult, multi_bootstrap
from zoo.stats.seed_intervals import SeedInterval, SeedIntervals, seed_interval, seed_intervals

__all__ = [
    "Event",
    "EventTiming",
    "MultiBootstrapResult",
    "SeedInterval",
    "SeedIntervals",
    "event_step",
    "event_timing",
    "find_event",
    "multi_bootstrap",
    "seed_interval",
    "seed_intervals",
]
