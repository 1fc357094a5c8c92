"""The training loop: one run (a size x seed of a family) from step 0, or from its last keyframe.

What it owns: opening a run (fresh, resumed, or finished), seeding every stream from the run's
seeds, and the loop over its steps, with interruption and progress. What it does not own: the
update itself (zoo.engine.train_step and the training state, shared with replay), what a run
writes around each step (training/run_steps.py, shared with stacks of runs: training/stacked.py)
and the formats (zoo.store, data_index).

Resume contract: a killed run restarts from its last keyframe; steps recorded after it are dropped
and recomputed, and end bit-identical to an uninterrupted run (same environment fingerprint).

Several processes (`world`, see training.distributed): every rank runs this loop on its slice of
each global batch; rank 0 alone holds the lease and writes, and records the GLOBAL batch ids, so
the index equals a 1-process run's. A run resumes on the world size it was trained on, or on any
world size when it uses world-size-invariant numerics (`micro_batch_size`).
"""
from __future__ import annotations

import dataclasses
import os
import signal
import socket
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from data_index import Corpus
from zoo_common.progress import progress as progress_bar
from zoo_common.errors import ZooError
from training.background_writer import BackgroundWriter
from training.run_steps import RunSteps, stop_step, write_step
from training.session import Controls, Plan, Session
from training.distributed import (
    any_rank,
    broadcast_ints,
    check_world_size,
)
from zoo import environment
from zoo.engine import rng_state
from zoo.config.checkpoint_policy import checkpoint_steps, keyframe_steps
from zoo.config.run_config import RunConfig
from zoo.config.names import RunId
from zoo.store.store import Store
from zoo.engine.training_state import TrainingState, fresh_state, restore_state

_GO, _SKIP, _ERROR = 0, 1, 2  # rank 0's decision about a run, broadcast to the other ranks

@dataclass(frozen=True)
class RunOutcome:
    run_id: RunId
    status: str  # "trained", "resumed", "skipped" (already finished)
    first_step: int  # the step training started from (0 when fresh)
    last_step: int
    final_loss: float | None
    seconds: float


def run_id_of(cfg: RunConfig) -> RunId:
    return RunId(cfg.family, cfg.size.name, cfg.seed.seed)


def train_run(cfg: RunConfig, *, store: Store, corpus: Corpus, controls: Controls = Controls(),
              label: str = "") -> RunOutcome:
    """Train (or resume, or skip) one run into `store`; returns what happened. Every rank of
    `controls.world` calls this with the same arguments."""
    run_id = run_id_of(cfg)
    run = store.run(run_id)
    world = controls.world
    check_world_size(cfg, world.world_size)
    if cfg.micro_batch_size:
        if controls.threads not in (None, 1) and world.is_main:
            print(f"note: {run_id.key} uses world-size-invariant numerics (micro_batch_size), "
                  f"which fix 1 thread per process; --threads {controls.threads} is ignored")
        controls = dataclasses.replace(controls, threads=1)
    started = time.perf_counter()
    owner = f"{socket.gethostname()}:{os.getpid()}"
    note = environment.busy_machine_note(controls.threads or torch.get_num_threads())
    if note and controls.shows_progress:
        print(f"note: {note}", file=sys.stderr)
    with run.lock(owner) if world.is_main else nullcontext():
        writer = BackgroundWriter()  # step 0's write, the loop's, and the logs'
        session = Session(cfg, run, corpus, Plan.of_run(cfg), controls, label or run_id.key,
                          writer)
        try:
            state = _open_on_every_rank(session)
            if isinstance(state, int):
                return RunOutcome(run_id, "skipped", state, state, None, 0.0)
            first_step = state.step
            last_step, final_loss = train_steps(session, state, _parallel(state.model, session))
        except RuntimeError as exc:
            if not (world.distributed and _lost_a_peer(exc)):
                raise
            raise ZooError(
                f"{run_id.key}: rank {world.rank} lost contact with another process of this run "
                f"({str(exc).splitlines()[0][:160]}); everything written up to the last keyframe is "
                f"valid: run the same command to resume"
            ) from exc
        finally:
            writer.close()  # every queued write lands (or its error is raised) before the lease goes
    return RunOutcome(
        run_id, "resumed" if first_step > 0 else "trained", first_step, last_step, final_loss,
        time.perf_counter() - started,
    )


def _open_on_every_rank(session: Session):
    """Rank 0 opens (or creates) the run and tells the others; they load the same state read-only.
    Returns the last step (int) when the run is already finished, else the training state."""
    run, world = session.run, session.controls.world
    if world.is_main:
        try:
            state = open_or_create(session)
        except BaseException:
            broadcast_ints(world, [_ERROR, 0])  # the others stop instead of waiting for rank 0
            raise
        if state is None:
            last = run.read_json("status.json")["last_step"]
            broadcast_ints(world, [_SKIP, last])
            return last
        broadcast_ints(world, [_GO, state.step])
        return state
    decision, step = broadcast_ints(world, [0, 0])
    if decision == _ERROR:
        raise ZooError(f"{run.run_id.key}: rank 0 could not start the run (its message says why)")
    if decision == _SKIP:
        return step
    if step == 0:
        return _fresh_state(session)
    return keyframe_state(session, step)


def _lost_a_peer(exc: RuntimeError) -> bool:
    """A collective failed because a peer died or hung up (gloo / nccl report it as RuntimeError)."""
    import torch.distributed as dist

    text = str(exc)
    return isinstance(exc, dist.DistError) or any(
        word in text for word in ("gloo", "NCCL", "Connection reset", "Connection closed"))


def _parallel(model, session: Session):
    """What the training step runs: plain DDP (gradients all-reduced in backward), or the model
    itself when it is alone or when the invariant path gathers micro-batch gradients itself."""
    if not session.controls.world.distributed or session.cfg.micro_batch_size:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device = torch.device(session.device)
    ids = [device.index] if device.type == "cuda" else None
    # buffers (rotary tables) are constants built identically on every rank: synced once at init
    return DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)


def open_or_create(session: Session):
    """Fresh run: write its records and step 0. Existing run: check it, restore its last keyframe."""
    cfg, run, corpus = session.cfg, session.run, session.corpus
    drawn = getattr(corpus, "drawn", False)  # drawn afresh (data_index/features.py): no samples
    if cfg.data.seq_len != corpus.seq_len and not drawn:
        raise ZooError(f"{cfg.model_name}: data.seq_len {cfg.data.seq_len} != corpus {corpus.seq_len}")
    if cfg.batch_size > corpus.n_samples:
        raise ZooError(
            f"{cfg.model_name}: batch_size {cfg.batch_size} is larger than the corpus "
            f"({corpus.n_samples} samples of {corpus.seq_len} tokens); use a smaller batch or more data"
        )
    trainable = corpus.n_samples if drawn else len(corpus.train_ids(cfg.seed.data_seed))
    if cfg.batch_size > trainable:
        raise ZooError(
            f"{cfg.model_name}: batch_size {cfg.batch_size} is larger than the train split of seed "
            f"{cfg.seed.seed} ({trainable} of {corpus.n_samples} samples); for full-batch training "
            f"set batch_size: full"
        )
    if run.exists() and run.keyframe_steps():
        record = run.read_json("run.json")
        changed = RunConfig.from_json(record["config"]).differences(cfg)
        if changed:
            raise ZooError(
                f"{run.run_id.key} was started with another manifest: changed "
                f"{', '.join(changed)}; restore those values, or train under a new family name"
            )
        if record["corpus_fingerprint"] != corpus.fingerprint:
            raise ZooError(
                f"{run.run_id.key} was trained on corpus {record['corpus_fingerprint'][:16]}…, "
                f"the manifest now gives {corpus.fingerprint[:16]}…"
            )
        status = run.read_json("status.json")
        if status.get("finished"):
            return None
        _check_same_world_size(session)
        return _resume(session)
    return _start(session)


def _check_same_world_size(session: Session) -> None:
    run, world = session.run, session.controls.world
    recorded = run.read_json("environment.json").get("world_size", 1)
    if recorded == world.world_size or session.cfg.micro_batch_size:
        return
    how = ("`zoo train ... --nproc {n}` or `torchrun --nproc-per-node {n} -m training ...`"
           if recorded > 1 else "`zoo train ...` without --nproc or torchrun").format(n=recorded)
    raise ZooError(
        f"{run.run_id.key} was trained on {recorded} process(es) and would resume on "
        f"{world.world_size}: its bits depend on the number of processes; resume it with {how}. "
        f"Only runs with world-size-invariant numerics (micro_batch_size in the manifest) may "
        f"change the number of processes"
    )


def _fresh_state(session: Session) -> TrainingState:
    corpus = session.corpus
    return fresh_state(session.cfg, vocab_size=corpus.vocab_size, eos_token_id=corpus.eos_id,
                       device=session.device, threads=session.controls.threads)


def keyframe_state(session: Session, step: int) -> TrainingState:
    """The state at keyframe `step`, always with the recorded thread count (to keep its bits)."""
    run, corpus, controls = session.run, session.corpus, session.controls
    recorded_threads = run.read_json("environment.json")["threads"]
    if controls.threads not in (None, recorded_threads) and controls.world.is_main:
        print(f"note: {run.run_id.key} was trained with {recorded_threads} threads; "
              f"resuming with {recorded_threads} (not {controls.threads}) to keep its bits")
    return restore_state(run, session.cfg, step, vocab_size=corpus.vocab_size,
                         eos_token_id=corpus.eos_id, device=session.device,
                         rank=controls.world.rank, world_size=controls.world.world_size)


def _start(session: Session) -> TrainingState:
    cfg, run, corpus, world = session.cfg, session.run, session.corpus, session.controls.world
    run.delete_after(-1)  # a run that died before its first keyframe leaves nothing to keep
    state = _fresh_state(session)
    fingerprint = environment.fingerprint(session.device, world_size=world.world_size,
                                          backend=world.backend)
    run.write_json("environment.json", fingerprint)
    run.write_json("run.json", {
        "format": 1,
        "run": run.run_id.key,
        "model_name": cfg.model_name,
        "seed": cfg.seed.seed,
        "init_seed": cfg.seed.init_seed,
        "data_seed": cfg.seed.data_seed,
        "config": cfg.to_json(),
        "config_hash": cfg.config_hash(),
        "corpus_fingerprint": corpus.fingerprint,
        "n_samples": corpus.n_samples,
        **_split_record(corpus, cfg),
        "hf_config": state.model.config.to_dict(),
        "checkpoint_steps": checkpoint_steps(cfg.checkpoints, cfg.steps),
        "keyframe_steps": keyframe_steps(cfg.checkpoints, cfg.steps),
    })
    # every rank seeded its streams alike and drew nothing yet: rank 0's states are everyone's
    rng = rng_state.capture()
    if world.distributed:
        rng = {**rng, "per_rank": [rng] * world.world_size}
    write_step(session, state, fingerprint=fingerprint, checkpoint=True, keyframe=True, rng=rng)
    return state


def _split_record(corpus: Corpus, cfg: RunConfig) -> dict:
    """What pins a task run's train/test split (nothing for a corpus without one)."""
    if corpus.train_fraction is None:
        return {}
    from data_index.splits import SPLIT_RULE, split_digest

    train = corpus.train_ids(cfg.seed.data_seed)
    return {"split": {"rule": SPLIT_RULE, "train_fraction": corpus.train_fraction, "data_seed": cfg.seed.data_seed,
                      "n_train": len(train), "n_test": corpus.n_samples - len(train),
                      "train_sha256": split_digest(train)}}


def _resume(session: Session) -> TrainingState:
    step = session.run.keyframe_steps()[-1]
    state = keyframe_state(session, step)
    session.run.delete_after(step)
    return state


def train_steps(session: Session, state: TrainingState, train_model) -> tuple[int, float | None]:
    """Steps state.step+1 .. the plan's end (or the controls' stop); returns (last step, its
    loss). Writes go through the session's writer, which the caller closes (after this returns,
    the index's and metrics' last parts are queued on it)."""
    controls, plan = session.controls, session.plan
    world, first_step = controls.world, state.step
    end = stop_step(session)
    steps = RunSteps(session, first_step)
    bar = progress_bar(total=plan.end_step, initial=first_step, desc=session.label, unit="step",
                       enabled=controls.shows_progress)
    step, loss, recent = first_step, None, None
    interrupt = InterruptAtStepBoundary()
    try:
        for step in range(first_step + 1, end + 1):
            tic = time.perf_counter()
            ids, batch, mask = steps.batch(step)
            stats = state.update(batch, loss_mask=mask, model=train_model, world_size=world.world_size)
            loss = stats.loss
            wall = time.perf_counter() - tic
            steps.record(step, ids, stats, wall)
            if step == controls.hold_after_step:
                interrupt.wait(f"holding after step {step} (--hold-after-step): waiting for a signal")
            # a graceful stop (Ctrl-C, SIGTERM, --stop-after-step) keyframes the step it stops
            # after, so that nothing trained is lost: the next run goes on from exactly there
            interrupted = any_rank(world, interrupt.requested)  # every rank stops after one step
            steps.store(step, stopping=interrupted or step == end < plan.end_step, state=state)
            # the rate shown is over the recent steps (an average with weight 0.05 per step):
            # one step's own time jumps 100x when another process takes the cores for a moment
            recent = wall if recent is None else 0.95 * recent + 0.05 * wall
            if controls.shows_progress:  # a disabled bar still formats its postfix
                bar.update(1)
                bar.set_postfix(loss=f"{stats.loss:.3f}",
                                **{steps.rate: f"{steps.per_step / max(recent, 1e-9):,.0f}"})
            if interrupted:
                raise GracefulStop(step)
    finally:
        interrupt.restore()
        try:
            steps.close()
        finally:
            bar.close()
    return step, loss


class GracefulStop(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, honoured after a whole step whose keyframe is then written."""

    def __init__(self, step: int) -> None:
        super().__init__(f"stopped after step {step}, and keyframed it: the same command goes on "
                         f"from step {step}")
        self.step = step


class InterruptAtStepBoundary:
    """Ctrl-C (or SIGTERM: a scheduler's stop, torchrun's) finishes the step in flight, keyframes
    it and stops: the next `zoo train` goes on from that very step. A second Ctrl-C interrupts at
    once (then the last keyframe before it is where training goes on)."""

    def __init__(self, *, also_sigterm: bool = True) -> None:
        self.requested = False
        self._first = 0.0
        self._previous: dict = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM) if also_sigterm else (signal.SIGINT,):
                self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum, frame) -> None:
        # Ctrl-C under torchrun reaches a worker twice within moments: from the terminal, then
        # forwarded by torchrun (SIGINT or SIGTERM); only a later repeat means "stop now"
        now = time.monotonic()
        if self.requested and now - self._first > 2.0:
            raise KeyboardInterrupt
        if not self.requested:
            self._first = now
        self.requested = True

    def wait(self, message: str) -> None:
        """Say `message` on stderr, then wait until an interrupt is requested."""
        print(f"zoo: {message}", file=sys.stderr, flush=True)
        while not self.requested:
            time.sleep(0.01)

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
