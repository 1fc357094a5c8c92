"""Every step is reachable: a step with no stored checkpoint is produced by replay from the
keyframe before it and cached as an ordinary snapshot, at the storage cost of keyframes only.

The cached folder is served only while the store still holds what it was replayed from (the
run's record, the keyframe, the data index: snapshot_folder.replayed_source); otherwise the step
is replayed again.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from zoo.engine.step_replay import replay_start, restore, step_to
from zoo.registry.snapshot_folder import (
    is_current,
    replayed_source,
    snapshot_folder,
    write_snapshot,
)
from zoo.environment import held_thread_count
from zoo.store.run_store import RunStore
from zoo_common.progress import progress as progress_bar

ON_STEP = Callable[[int, int], None]  # (training steps replayed so far, steps to replay)


def materialize_step(run: RunStore, step: int, *, progress: bool = False,
                     on_step: ON_STEP | None = None) -> Path:
    """The snapshot folder of a step that was not stored, replayed once and then cached.

    `on_step(done, total)` is called after each replayed training step, so a caller that is not
    a terminal (zoo serve's waiting page) can show how far a long replay is."""
    folder, keyframe, source = _plan(run, step)
    if is_current(folder, source):
        return folder
    with held_thread_count():
        state = restore(run, keyframe, store=run.store)  # sets the run's recorded thread count
        todo = range(keyframe + 1, step + 1)
        bar = progress_bar(todo, desc=f"replay {run.run_id.key} -> step {step}", unit="step",
                           enabled=progress and len(todo) >= 8)
        for done, target in enumerate(bar, start=1):
            step_to(state, target)  # one recorded training step: the same as all at once
            if on_step is not None:
                on_step(done, len(todo))
    tensors = {k: v.detach().cpu().clone() for k, v in state.model.state_dict().items()}  # untied
    tokens_seen = step * state.cfg.batch_size * state.corpus.seq_len
    return write_snapshot(folder, run=run, step=step, tensors=tensors, tokens_seen=tokens_seen,
                          source=source)


def is_materialized(run: RunStore, step: int) -> bool:
    """Whether a step that was not stored is replayed and cached already (and still current)."""
    folder, _, source = _plan(run, step)
    return is_current(folder, source)


def _plan(run: RunStore, step: int) -> tuple[Path, int, dict]:
    """Where the step's folder goes, the keyframe its replay starts from, and what it is built from."""
    keyframe = replay_start(run, step)
    source = replayed_source(run, keyframe, run.keyframe_manifest(keyframe), run.index_record())
    return snapshot_folder(run, step), keyframe, source
