"""Which steps of a run keep weights (checkpoints) and which keep full keyframes.

Pythia's schedule, made explicit: step 0, log-spaced steps 1, 2, 4, ... up to `log_spaced_until`,
then every `every` steps, and always the final step. Keyframes (weights + optimizer + RNG + data
cursor) every `keyframe_every` steps, plus 0 and the final step; every keyframe is also a
checkpoint, so any stored keyframe's weights can be fetched like any other checkpoint. Steps that
are neither are reached by replaying from the nearest keyframe before them.
"""

from __future__ import annotations

from zoo_common.errors import ZooError
from zoo.config.run_config import CheckpointConfig


def _check_total(total_steps: int) -> None:
    if total_steps < 0:
        raise ZooError(f"total_steps must be >= 0, got {total_steps}")


def keyframe_steps(cfg: CheckpointConfig, total_steps: int) -> list[int]:
    """0, every K, and the final step; ascending, unique."""
    _check_total(total_steps)
    steps = set(range(0, total_steps + 1, cfg.keyframe_every))
    steps.add(total_steps)
    return sorted(steps)


def checkpoint_steps(cfg: CheckpointConfig, total_steps: int) -> list[int]:
    """0, 1, 2, 4, ... <= log_spaced_until, every N, every keyframe, and the final step."""
    _check_total(total_steps)
    steps = {0, total_steps}
    power = 1
    while power <= min(cfg.log_spaced_until, total_steps):
        steps.add(power)
        power *= 2
    steps.update(range(0, total_steps + 1, cfg.every))
    steps.update(keyframe_steps(cfg, total_steps))
    return sorted(steps)
