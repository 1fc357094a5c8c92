"""Every step is reachable: a step with no stored checkpoint is produced by replay from the
keyframe before it and cached as an ordinary snapshot, at the storage cost of keyframes only.

The cached folder is served only while the store still holds what it was replayed from (the
run's record, the keyframe, the data index: snapshot_folder.replayed_source); otherwise the step
is replayed again.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from zoo import environment
from zoo.engine.step_replay import (
    ReplayReport,
    check_replay_arguments,
    replay_run,
    replay_start,
    restore,
    step_to,
)
from safetensors import safe_open

from zoo.registry.snapshot_folder import (
    WEIGHTS,
    is_current,
    replayed_source,
    snapshot_folder,
    write_snapshot,
)
from zoo.environment import held_thread_count
from zoo.store.lineage import batch_owner
from zoo.store.store import Store
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


def replay(name: str, *, seed: int, step: int, store=None, threads: int | None = None,
           device: str = "cpu", progress: bool = False, branch: str | None = None) -> ReplayReport:
    """`zoo.replay`: replay step `step` of (name, seed) (of its branch `branch`) and compare it
    with the stored checkpoint if there is one.

    A step that was not stored has nothing to compare with: its replay is exactly what zoo.load
    serves, so the two share it. A step zoo.load (or an earlier replay) cached is not replayed
    again, and one replayed here is cached for zoo.load. Only at the run's recorded thread count
    on the CPU, where the cached bits are the same; `threads` or another device replays anew."""
    from zoo.store.catalog import open_run, open_store

    store = open_store(store)
    return replay_step(open_run(name, seed=seed, store=store, branch=branch), step, store=store,
                       threads=threads, device=device, progress=progress)


def replay_step(run: RunStore, step: int, *, store: Store, threads: int | None = None,
                device: str = "cpu", progress: bool = False) -> ReplayReport:
    """`replay` of an opened run (zoo replay's path too)."""
    step, threads, device = check_replay_arguments(step, threads, device)
    owner = batch_owner(run, step)
    if (threads is not None or device != "cpu" or not 0 < step <= owner.status().get("last_step", 0)
            or step in owner.checkpoint_steps() or step in owner.keyframe_steps()):
        return replay_run(run, step, store=store, threads=threads, device=device,
                          progress=progress)  # a check against what training stored
    started = time.perf_counter()
    cached = is_materialized(owner, step)
    folder = materialize_step(owner, step, progress=progress)  # the cached folder, when cached
    with safe_open(str(folder / WEIGHTS), framework="pt") as weights:
        n_tensors = len(list(weights.keys()))
    keyframe = replay_start(owner, step)
    then = owner.read_keyframe(keyframe).extra["environment"]
    now = environment.fingerprint("cpu")
    return ReplayReport(run=owner.run_id.key, step=step, from_keyframe=keyframe, compared=False,
                        exact=None, n_tensors=n_tensors,
                        n_different=0, first_difference=None, max_abs_diff=0.0,
                        environment_then=then, environment_now=now,
                        environment_differences=environment.differences(then, now),
                        seconds=time.perf_counter() - started, cached=cached)
