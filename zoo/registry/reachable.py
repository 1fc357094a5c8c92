"""Every step is reachable: a step with no stored checkpoint is produced by replay from the
keyframe before it and cached as an ordinary snapshot, at the storage cost of keyframes only.

The cached folder is served only while the store still holds what it was replayed from (the
run's record, the keyframe, the data index: snapshot_folder.replayed_source); otherwise the step
is replayed again.
"""
from __future__ import annotations

from pathlib import Path

import torch

from zoo.engine.step_replay import advance, replay_start
from zoo.registry.snapshot_folder import (
    is_current,
    replayed_source,
    snapshot_folder,
    write_snapshot,
)
from zoo.store.run_store import RunStore


def materialize_step(run: RunStore, step: int, *, progress: bool = False) -> Path:
    """The snapshot folder of a step that was not stored, replayed once and then cached."""
    folder = snapshot_folder(run, step)
    keyframe = replay_start(run, step)
    source = replayed_source(run, keyframe, run.keyframe_manifest(keyframe), run.index_record())
    if is_current(folder, source):
        return folder
    previous_threads = torch.get_num_threads()
    try:
        state = advance(run, step, store=run.store, progress=progress)
    finally:
        torch.set_num_threads(previous_threads)
    tensors = {k: v.detach().cpu().clone() for k, v in state.model.state_dict().items()}  # untied
    tokens_seen = step * state.cfg.batch_size * state.corpus.seq_len
    return write_snapshot(folder, run=run, step=step, tensors=tensors, tokens_seen=tokens_seen,
                          source=source)
