"""`zoo.snapshot`: any step of any run as a local Hugging Face folder, cached and reused.

A stored step is decoded (every blob verified) and written with safetensors' own `save_file`; a
step between checkpoints is replayed from the keyframe before it (reachable.py). Either way the
folder opens with `from_pretrained`, TransformerLens, nnsight or any HF tool.
"""
from __future__ import annotations

import os
from pathlib import Path

from zoo_common.arguments import whole_number
from zoo_common.errors import StepNotFoundError
from zoo.registry.reachable import materialize_step
from zoo.registry.snapshot_folder import is_current, snapshot_folder, stored_source, write_snapshot
from zoo.store.catalog import open_run
from zoo.store.lineage import weights_owner
from zoo.store.records import format_steps
from zoo.store.run_store import RunStore
from zoo.store.store import Store


def snapshot(name: str, *, seed: int, step: int, store: str | os.PathLike | Store | None = None,
             progress: bool = False, branch: str | None = None, stock: bool = False) -> Path:
    """A local Hugging Face folder for (name, seed, step) (of branch `branch`), cached and reused.
    `progress` shows a bar while a step that was not stored is replayed. `stock=True`: a toy model
    as the stock class that computes the same (GELU, ReLU, attention-only: GPT2LMHeadModel), which
    opens with no remote code (zoo/models/stock_forms.py)."""
    step = whole_number(step, "step")
    run = open_run(name, seed=seed, store=store, branch=branch)
    folder = run_snapshot(run, step, progress=progress)
    if not stock:
        return folder
    from zoo.registry.stock_snapshots import stock_snapshot

    return stock_snapshot(folder)


def run_snapshot(run: RunStore, step: int, *, progress: bool = False) -> Path:
    """`snapshot` of an opened run. A toy-architecture run's model type is registered with
    transformers' Auto classes here, so the folder opens with `from_pretrained` in this process.
    A branch's steps before its branch point are its parent's."""
    run = weights_owner(run, step)
    if run.read_json("run.json")["hf_config"].get("model_type") in ("zoo-toy", "zoo-superposition"):
        from zoo.models.own_types import register_own_models  # imports transformers: when needed

        register_own_models()
    stored = run.checkpoint_steps()
    check_step(run, step, stored)
    if step not in stored:
        return materialize_step(run, step, progress=progress)
    folder = snapshot_folder(run, step)
    source = stored_source(run, run.checkpoint_manifest(step))
    if is_current(folder, source):
        return folder
    checkpoint = run.read_checkpoint(step)
    return write_snapshot(folder, run=run, step=step, tensors=checkpoint.tensors,
                          tokens_seen=checkpoint.tokens_seen, source=source)


def check_step(run: RunStore, step: int, stored: list[int]) -> None:
    """Refuse a step the run cannot serve, saying what is stored and what can be replayed."""
    if step in stored:
        return
    last = int(run.status().get("last_step", stored[-1] if stored else 0))
    keyframes = run.keyframe_steps()
    if 0 < step <= last and keyframes:
        return  # reachable by replay from the keyframe before it
    config = run.read_json("run.json").get("config", {})
    every = config.get("checkpoints", {}).get("keyframe_every")
    replay = (f"keyframes every {every}; any step 1..{last} can be replayed" if keyframes
              else "no keyframes, so only stored steps can be loaded")
    raise StepNotFoundError(f"no step {step} for {run.run_id}; stored: {format_steps(stored)}, {replay}")
