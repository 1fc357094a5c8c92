"""Every step is reachable: a step with no stored checkpoint is produced by replay from the
keyframe before it and cached as an ordinary snapshot, at the storage cost of keyframes only."""
from __future__ import annotations

from pathlib import Path

import torch

from zoo.store import RunStore, Store


def materialize_step(run: RunStore, step: int, *, store: Store, progress: bool = True) -> Path:
    from zoo.registry import SNAPSHOT_RECORD, _snapshot_folder, write_snapshot
    from zoo.step_replay import advance

    folder = _snapshot_folder(store, run, step)
    if (folder / SNAPSHOT_RECORD).exists():
        return folder
    previous_threads = torch.get_num_threads()
    try:
        state = advance(run, step, store=store, progress=progress)
    finally:
        torch.set_num_threads(previous_threads)
    tensors = {k: v.detach().cpu() for k, v in state.model.state_dict().items()}
    tokens_seen = step * state.cfg.batch_size * state.cfg.data.seq_len
    return write_snapshot(folder, run=run, store=store, step=step, tensors=tensors,
                          tokens_seen=tokens_seen)
