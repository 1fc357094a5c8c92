"""Every step is reachable: a step with no stored checkpoint is produced by replay from the
keyframe before it and cached as an ordinary snapshot, at the storage cost of keyframes only."""
from __future__ import annotations

from pathlib import Path

import torch

from zoo.registry.snapshot_folder import is_built, snapshot_folder, write_snapshot
from zoo.engine.step_replay import advance
from zoo.store.run_store import RunStore


def materialize_step(run: RunStore, step: int, *, progress: bool = False) -> Path:
    """The snapshot folder of a step that was not stored, replayed once and then cached."""
    folder = snapshot_folder(run, step)
    if is_built(folder):
        return folder
    previous_threads = torch.get_num_threads()
    try:
        state = advance(run, step, store=run.store, progress=progress)
    finally:
        torch.set_num_threads(previous_threads)
    tensors = {k: v.detach().cpu().clone() for k, v in state.model.state_dict().items()}  # untied
    tokens_seen = step * state.cfg.batch_size * state.cfg.data.seq_len
    return write_snapshot(folder, run=run, step=step, tensors=tensors, tokens_seen=tokens_seen)
