"""Exact replay: re-run training steps from a keyframe with the recorded batches and check the
result bit for bit against what training stored.

Replay restores everything a keyframe holds (weights, optimizer, scheduler position, RNG states,
data cursor) and the recorded thread count, then calls the same `training_step` the loop called.
It never reports `exact` by assumption: exact means every tensor equals the stored checkpoint bit
for bit; when the environment fingerprint differs, the report says how, and still compares.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from data_index import Corpus, StepIndex
from zoo_common.progress import progress as progress_bar
from zoo_common.arguments import whole_number
from zoo_common.errors import StepNotFoundError, ZooError
from zoo import environment
from zoo.config.run_config import RunConfig
from zoo.store.corpora import open_corpus
from zoo.store.lineage import batch_owner
from zoo.store.run_store import RunStore
from zoo.store.store import Store
from zoo.engine.train_step import STEP_OBSERVER
from zoo.engine.training_state import TrainingState, restore_state, training_batch


@dataclass(frozen=True)
class ReplayReport:
    run: str
    step: int
    from_keyframe: int
    compared: bool  # False when `step` has no stored checkpoint to compare with
    # True: every tensor bit-identical to the stored checkpoint; False: some differ; None: not
    # checked, because nothing was stored at this step (see `status`)
    exact: bool | None
    n_tensors: int
    n_different: int
    first_difference: str | None
    max_abs_diff: float
    environment_then: dict
    environment_now: dict
    environment_differences: dict = field(default_factory=dict)
    seconds: float = 0.0
    cached: bool = False  # a step not stored, served from the replay an earlier call cached

    @property
    def status(self) -> str:
        """"EXACT", "DIFFERS", or "REPLAYED" (not checked: no stored checkpoint at the step)."""
        return "REPLAYED" if self.exact is None else "EXACT" if self.exact else "DIFFERS"

    def verdict(self) -> str:
        where = f"{self.run} step {self.step} (from keyframe {self.from_keyframe})"
        if not self.compared and self.cached:
            return (f"REPLAYED {where}: no stored checkpoint at this step to compare with; its "
                    f"replay was cached by an earlier zoo.load or zoo.replay (from the same "
                    f"keyframe, data index and record), so it was not replayed again")
        if not self.compared:
            return f"REPLAYED {where}: no stored checkpoint at this step to compare with"
        if self.exact:
            return f"EXACT {where}: {self.n_tensors} tensors bit-identical"
        env = ""
        if self.environment_differences:
            env = "; environment differs: " + ", ".join(
                f"{k} {a!r} -> {b!r}" for k, a, b in
                ((k, *v) for k, v in self.environment_differences.items()))
        return (f"DIFFERS {where}: {self.n_different}/{self.n_tensors} tensors differ, first "
                f"{self.first_difference}, max |diff| {self.max_abs_diff:.3g}{env}")


@dataclass
class ReplayState:
    """A run restored and advanced to `step`: what replay and instrumented replay work on."""

    training: TrainingState
    from_keyframe: int
    corpus: Corpus
    index: StepIndex
    run: str
    device: str

    @property
    def step(self) -> int:
        return self.training.step

    @property
    def cfg(self) -> RunConfig:
        return self.training.cfg

    @property
    def model(self) -> torch.nn.Module:
        return self.training.model

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.training.optimizer

    @property
    def scheduler(self):
        return self.training.scheduler

    @property
    def environment_then(self) -> dict:
        return self.training.environment_then


def replay(name: str, *, seed: int, step: int, store: str | Store | None = None,
           threads: int | None = None, device: str = "cpu", progress: bool = False,
           branch: str | None = None) -> ReplayReport:
    """Replay step `step` of (name, seed) (of its branch `branch`) and compare with the stored
    checkpoint if there is one."""
    from zoo.store.catalog import open_run, open_store

    store = open_store(store)
    return replay_run(open_run(name, seed=seed, store=store, branch=branch), step, store=store,
                      threads=threads, device=device, progress=progress)


def check_replay_arguments(step, threads, device) -> tuple[int, int | None, str]:
    """The step, thread count and device of a replay, checked before any work."""
    step = whole_number(step, "step")
    if threads is not None:
        threads = whole_number(threads, "threads", minimum=1)
    return step, threads, environment.check_device(device)


def replay_run(run: RunStore, step: int, *, store: Store, threads: int | None = None,
               device: str = "cpu", progress: bool = False) -> ReplayReport:
    """`replay` of an opened run; a branch's steps up to its branch point are its parent's."""
    step, threads, device = check_replay_arguments(step, threads, device)
    run = batch_owner(run, step)
    started = time.perf_counter()
    previous_threads = torch.get_num_threads()
    try:
        state = advance(run, step, store=store, threads=threads, device=device, progress=progress)
        return _report(run, state, started)
    finally:
        torch.set_num_threads(previous_threads)


def check_all(run: RunStore, *, store: Store, threads: int | None = None, device: str = "cpu",
              progress: bool = False) -> list[ReplayReport]:
    """Replay every stored step (checkpoints and keyframes) from the keyframe before it.

    Walks each keyframe interval once, so the cost is one pass over the run's steps.
    """
    keyframes = run.keyframe_steps()
    stored = sorted(set(run.checkpoint_steps()) | set(keyframes))
    last = run.read_json("status.json")["last_step"]
    targets = [s for s in stored if 0 < s <= last]
    reports: list[ReplayReport] = []
    previous_threads = torch.get_num_threads()
    bar = progress_bar(total=len(targets), desc=f"replay --all {run.run_id.key}", unit="ckpt",
                       enabled=progress)
    try:
        state = None
        for target in targets:
            start_from = max(k for k in keyframes if k <= target - 1)
            if state is None or state.from_keyframe != start_from:
                state = restore(run, start_from, store=store, threads=threads, device=device)
            started = time.perf_counter()
            step_to(state, target, progress=False)
            reports.append(_report(run, state, started))
            bar.update(1)
    finally:
        bar.close()
        torch.set_num_threads(previous_threads)
    return reports


def stored_weights(run: RunStore, step: int) -> dict | None:
    """What training stored for `step`: its checkpoint, else its keyframe's weights, else None."""
    if step in run.checkpoint_steps():
        return run.read_checkpoint(step).tensors
    if step in run.keyframe_steps():
        return run.read_keyframe(step).model
    return None


def _report(run: RunStore, state: ReplayState, started: float) -> ReplayReport:
    now = environment.fingerprint(state.device)
    weights = state.model.state_dict()
    reference = stored_weights(run, state.step)
    n_diff, first, max_diff = (0, None, 0.0) if reference is None else compare_tensors(weights, reference)
    return ReplayReport(
        run=run.run_id.key, step=state.step, from_keyframe=state.from_keyframe,
        compared=reference is not None, exact=None if reference is None else n_diff == 0,
        n_tensors=len(weights), n_different=n_diff, first_difference=first,
        max_abs_diff=max_diff, environment_then=state.environment_then, environment_now=now,
        environment_differences=environment.differences(state.environment_then, now),
        seconds=time.perf_counter() - started,
    )


def advance(run: RunStore, step: int, *, store: Store, threads: int | None = None,
            device: str = "cpu", progress: bool = False,
            observe: STEP_OBSERVER | None = None) -> ReplayState:
    """Restore the keyframe before `step` and run training steps up to `step` included.

    `observe` is passed to the training step of `step` itself (instrumented replay).
    Changes the process's thread count to the recorded one (or `threads`); callers restore it.
    """
    keyframe_step = replay_start(run, step)
    state = restore(run, keyframe_step, store=store, threads=threads, device=device)
    step_to(state, step, progress=progress, observe=observe)
    return state


def replay_start(run: RunStore, step: int) -> int:
    """The keyframe a replay of `step` starts from: the last one before it (checked reachable)."""
    cfg = RunConfig.from_json(run.read_json("run.json")["config"])
    _check_reachable(run, step, cfg)
    return max(k for k in run.keyframe_steps() if k <= step - 1)


def restore(run: RunStore, keyframe_step: int, *, store: Store, threads: int | None = None,
            device: str = "cpu") -> ReplayState:
    """A run as it was at a keyframe, with its corpus and data index opened and checked."""
    record = run.read_json("run.json")
    cfg = RunConfig.from_json(record["config"])
    corpus = open_corpus(store, record["corpus_fingerprint"])
    index = StepIndex.open(run.index_location, header=run.index_record())
    if index.corpus_fingerprint != corpus.fingerprint:
        raise ZooError(
            f"{run.run_id.key}: data index was written for corpus {index.corpus_fingerprint[:16]}…, "
            f"the run's corpus is {corpus.fingerprint[:16]}…"
        )
    state = restore_state(run, cfg, keyframe_step, vocab_size=corpus.vocab_size,
                          eos_token_id=corpus.eos_id, device=device, threads=threads)
    return ReplayState(state, keyframe_step, corpus, index, run.run_id.key, device)


def step_to(state: ReplayState, step: int, *, progress: bool = False,
            observe: STEP_OBSERVER | None = None) -> None:
    """Run the recorded training steps state.step+1 .. step (the same function training ran)."""
    if step > state.index.last_step:
        raise StepNotFoundError(f"{state.run}: the data index records steps {state.index.first_step}.."
                       f"{state.index.last_step}; step {step} was never trained")
    todo = range(state.step + 1, step + 1)
    for s in progress_bar(todo, desc=f"replay {state.run} -> step {step}", unit="step",
                          enabled=progress and len(todo) >= 8):
        batch, mask = training_batch(state.corpus, state.index.batch_ids(s), state.device,
                                     data_seed=state.cfg.seed.data_seed,
                                     masked=state.cfg.masked_at(s))
        state.training.update(batch, loss_mask=mask, observe=observe if s == step else None)


def compare_tensors(ours: dict, stored: dict) -> tuple[int, str | None, float]:
    """(number of differing tensors, first differing name, largest absolute difference)."""
    n_diff, first, max_diff = 0, None, 0.0
    for name in sorted(stored):
        a, b = ours[name].detach().cpu(), stored[name]
        if a.shape == b.shape and a.dtype == b.dtype and torch.equal(_bits(a), _bits(b)):
            continue
        n_diff += 1
        first = first or name
        if a.shape == b.shape:
            max_diff = max(max_diff, float((a.double() - b.double()).abs().max()))
        else:
            max_diff = float("inf")
    return n_diff, first, max_diff


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bits as integers, so NaNs and signed zeros compare by value of their bits."""
    widths = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
    return t.contiguous().view(widths[t.element_size()]) if t.is_floating_point() else t


def _check_reachable(run: RunStore, step: int, cfg: RunConfig) -> None:
    keyframes = run.keyframe_steps()
    if step == 0:
        raise StepNotFoundError("step 0 is the initial weights: there is no update to replay "
                       "(load it with zoo.load(name, seed=..., step=0))")
    if not keyframes:
        raise StepNotFoundError(f"{run.run_id.key} has no keyframes, so no step can be replayed; "
                       f"keyframes are written by `zoo train` at steps 0, K, 2K, ...")
    last = run.read_json("status.json")["last_step"]
    if step < 0 or step > last:
        raise StepNotFoundError(f"step {step} is outside {run.run_id.key}: it was trained for steps 1..{last} "
                       f"(of {cfg.steps} planned); any of those can be replayed")
