"""Statistics across seeds: intervals over seeds, the Multi-Bootstrap, event timing.

numpy in, frozen dataclasses out; every resampling takes rng_seed, so results are reproducible.
"""

from zoo.stats.events import EventTiming, event_step, event_timing
from zoo.stats.multi_bootstrap import MultiBootstrapResult, multi_bootstrap
from zoo.stats.seed_intervals import SeedInterval, SeedIntervals, seed_interval, seed_intervals

__all__ = [
    "EventTiming",
    "MultiBootstrapResult",
    "SeedInterval",
    "SeedIntervals",
    "event_step",
    "event_timing",
    "multi_bootstrap",
    "seed_interval",
    "seed_intervals",
]
