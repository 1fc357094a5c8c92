"""A training session: one run being trained in this process, everything the loop needs in one
object that a run (training/loop.py) and a branch (training/branching.py) both build.

Three parts, kept apart because they change for different reasons:
- `Controls`: how this process trains (device, threads, progress, where to stop); they never
  change a run's bits except the thread count, which is recorded and restored;
- `Plan`: where the run ends, which steps it stores, and which batch each step trains on;
- `Session`: the run itself (config, store folder, corpus), its plan and controls, and the writer
  thread its checkpoints go through.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from data_index import Corpus
from training.background_writer import BackgroundWriter
from training.distributed import SINGLE, World
from zoo.config.checkpoint_policy import checkpoint_steps, keyframe_steps
from zoo.config.run_config import RunConfig
from zoo.store.run_store import RunStore


@dataclass(frozen=True)
class Controls:
    """How this process trains: not part of the run's identity (threads aside, recorded).

    `stop_after_step` ends the work early as an interruption would (the next call resumes);
    `hold_after_step` waits after that step for Ctrl-C / SIGTERM or a kill, so interruption tests
    stop a run at a known step, not after a sleep."""

    device: str = "cpu"
    threads: int | None = None
    progress: bool = True
    stop_after_step: int | None = None
    hold_after_step: int | None = None
    world: World = SINGLE
    stack: bool | None = None  # runs of one shape together (training/stacked.py): True, False,
    # or None: where it was measured to help

    @property
    def shows_progress(self) -> bool:
        return self.progress and self.world.is_main


@dataclass(frozen=True)
class Plan:
    """Where a loop ends, what it stores, and which batches it trains on: a run's come from its
    config and the order function; a branch brings its own."""

    end_step: int
    checkpoint_steps: frozenset
    keyframe_steps: frozenset
    batch_of: object = None  # step -> global batch ids; None: the run's order function
    index_options: dict = field(default_factory=dict)  # more StepIndexWriter arguments (a branch's)

    @classmethod
    def of_run(cls, cfg: RunConfig) -> Plan:
        return cls(cfg.steps, frozenset(checkpoint_steps(cfg.checkpoints, cfg.steps)),
                   frozenset(keyframe_steps(cfg.checkpoints, cfg.steps)))


@dataclass
class Session:
    """One run in training: what the loop reads at every step and writes through `writer`."""

    cfg: RunConfig
    run: RunStore
    corpus: Corpus
    plan: Plan
    controls: Controls
    label: str
    writer: BackgroundWriter

    @property
    def device(self) -> str:
        """The device this rank trains on (`cuda` means its own GPU in a multi-process run)."""
        return self.controls.world.device(self.controls.device)
