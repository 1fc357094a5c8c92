"""One run's side of the training loop around each update: which batch step s trains on, and
what the run writes after it (data index, metrics, checkpoints, keyframes).

The one-run loop (training/loop.py) drives one RunSteps; a stack of runs (training/stacked.py)
drives one per member, so that a stacked run's records are written by the same code as a lone
run's.
"""
from __future__ import annotations

from data_index import StepIndexWriter, global_batch
from data_index.features import drawn_batch
from data_index.order import rank_slice
from training.background_writer import BackgroundWriter
from training.distributed import gather_rng_states
from training.session import Session
from zoo.engine import rng_state
from zoo.engine.train_step import scheduler_state
from zoo.engine.training_state import TrainingState, training_batch
from zoo.store.run_metrics import MetricsWriter
from zoo.store.run_store import INDEX_FOLDER, METRICS_FOLDER, RunStore
from zoo.store.run_write import RunWrite


def write_step(session: Session, state: TrainingState, *, fingerprint: dict, checkpoint: bool,
               keyframe: bool, rng: dict | None = None,
               log_parts: list[tuple[str, bytes]] = ()) -> None:
    """Write the state's checkpoint and/or keyframe (and, with a keyframe, the run's status), and
    `log_parts` (run-relative name, bytes: the index's and metrics' parts up to this step) before
    them in the same commit.

    The state is encoded into a staged RunWrite while training waits (the next update changes it
    in place); the commit (fsync, rename, manifests: mostly waiting on the disk) runs on the
    writer's thread while training goes on.
    """
    cfg, run, step = session.cfg, session.run, state.step
    weights = {name: t.detach().cpu() for name, t in state.model.state_dict().items()}
    tokens_seen = step * cfg.batch_size * session.corpus.seq_len  # drawn features: values
    optimizer_state = state.optimizer.state_dict() if keyframe else None
    position = scheduler_state(state.scheduler) if keyframe else None
    if keyframe and rng is None:
        rng = rng_state.capture()

    def stage() -> RunWrite:
        into = run.begin_write()
        try:
            for name, data in log_parts:
                into.add_file(name, data)
            if checkpoint:
                run.write_checkpoint(step, weights, tokens_seen=tokens_seen,
                                     config_hash=cfg.config_hash(), into=into)
            if keyframe:
                run.write_keyframe(
                    step,
                    model=weights,
                    optimizer=optimizer_state,
                    scheduler=position,
                    rng=rng,
                    extra={"data_cursor": {"next_step": step + 1, "data_seed": cfg.seed.data_seed,
                                           "batch_size": cfg.batch_size},
                           "environment": fingerprint},
                    tokens_seen=tokens_seen,
                    config_hash=cfg.config_hash(),
                    into=into,
                )
                end = session.plan.end_step
                run.write_json("status.json", {"last_step": step, "finished": step == end,
                                               "total_steps": end}, into=into)
        except BaseException:
            into.discard()
            raise
        return into

    staged = stage()
    session.writer.submit(staged.commit, on_skip=staged.discard)


def stop_step(session: Session) -> int:
    """The last step this call trains: the plan's end, or the controls' stop before it."""
    stop = session.controls.stop_after_step
    return session.plan.end_step if stop is None else min(session.plan.end_step, stop)


class StepBatches:
    """What step s of a run trains on: `batches(s)` -> (global batch ids, this rank's tokens or
    feature vectors, their loss mask or None)."""

    def __init__(self, session: Session) -> None:
        corpus, cfg = session.corpus, session.cfg
        self.session = session
        self._train_ids = (corpus.train_ids(cfg.seed.data_seed)
                           if corpus.train_fraction is not None else None)
        self._drawn = getattr(corpus, "drawn", False)

    def __call__(self, step: int):
        session, cfg = self.session, self.session.cfg
        plan, corpus, world = session.plan, session.corpus, session.controls.world
        ids = (plan.batch_of(step) if plan.batch_of is not None
               else drawn_batch(step, cfg.batch_size) if self._drawn
               else global_batch(step, data_seed=cfg.seed.data_seed, batch_size=cfg.batch_size,
                                 n_samples=corpus.n_samples, train_ids=self._train_ids))
        mine = rank_slice(ids, world.rank, world.world_size)
        batch, mask = training_batch(corpus, mine, session.device, data_seed=cfg.seed.data_seed,
                                     masked=cfg.masked_at(step))
        return ids, batch, mask


class RunSteps:
    """One run's side of the loop around each update: the batch step s trains on, and what it
    writes after the update (index, metrics, checkpoints, keyframes). The one-run loop drives one;
    a stack of runs (training/stacked.py) drives one per member, so both write alike.

    The logs' parts go through the writer, in order with the rest. At a keyframe they are gathered
    instead and committed with it, before its manifest: one commit (two rounds of fsyncs where
    there were four), and the keyframe never lands without them. Parts gathered but not handed to
    a commit (an error or a second Ctrl-C came first) are queued on their own by `close`.
    """

    def __init__(self, session: Session, first_step: int) -> None:
        cfg, run, corpus, plan = session.cfg, session.run, session.corpus, session.plan
        self.session, self.world = session, session.controls.world
        self.fingerprint = run.read_json("environment.json")
        self.rng: dict | None = None  # a stack member's streams (else captured at each keyframe)
        self._gathering: list[tuple[str, bytes]] | None = None  # run-relative name, bytes
        self._unsent: list[tuple[str, bytes]] = []
        self.index = self.metrics = None
        if self.world.is_main:
            self.index = StepIndexWriter(
                run.index_location, corpus_fingerprint=corpus.fingerprint,
                data_seed=cfg.seed.data_seed, batch_size=cfg.batch_size,
                n_samples=corpus.n_samples, after_step=first_step,
                train_fraction=corpus.train_fraction, drawn=getattr(corpus, "drawn", False),
                write_part=self._queued(INDEX_FOLDER), **plan.index_options)
            self.metrics = MetricsWriter(run, write_part=self._queued(METRICS_FOLDER))
            self.metrics.truncate_after(first_step)
        self.batch = StepBatches(session)  # (ids, tokens, mask) of a step
        self._drawn = getattr(corpus, "drawn", False)
        self.tokens_per_step = cfg.batch_size * corpus.seq_len  # drawn features: values (n per sample)
        self.rate = "samples_s" if self._drawn else "tok_s"
        self.per_step = cfg.batch_size if self._drawn else self.tokens_per_step

    def _queued(self, folder: str):
        def write_part(name: str, data: bytes) -> None:
            if self._gathering is not None:
                self._gathering.append((f"{folder}/{name}", data))
            else:
                _queue_file(self.session.writer, self.session.run, f"{folder}/{name}", data)
        return write_part

    def record(self, step: int, ids, stats, wall: float) -> None:
        if self.world.is_main:  # the index holds the GLOBAL batch: equal to a 1-process run's
            self.index.append(step, ids)
            self.metrics.record(step, loss=stats.loss, lr=stats.lr, grad_norm=stats.grad_norm,
                                tokens=step * self.tokens_per_step, wall_time=wall)

    def store(self, step: int, *, stopping: bool, state: TrainingState) -> None:
        """Write step `step`'s checkpoint and keyframe where the plan (or a stop) wants them."""
        plan = self.session.plan
        keyframe = step in plan.keyframe_steps or stopping
        if keyframe and self.world.is_main:  # a keyframe is never ahead of its logs
            self._gathering = self._unsent
            try:
                self.index.flush()
                self.metrics.flush()
            finally:
                self._gathering = None
        if step in plan.checkpoint_steps or keyframe:
            rng = (gather_rng_states(self.world, self.rng or rng_state.capture())
                   if keyframe else None)
            if self.world.is_main:
                write_step(self.session, state, fingerprint=self.fingerprint,
                           checkpoint=step in plan.checkpoint_steps, keyframe=keyframe, rng=rng,
                           log_parts=self._unsent)
                self._unsent = []  # the commit has them

    def close(self) -> None:
        """Queue the logs' last parts behind the last checkpoint."""
        if self.index is None:
            return
        for name, data in self._unsent:
            _queue_file(self.session.writer, self.session.run, name, data)
        self._unsent = []
        self.index.close()
        self.metrics.close()


def _queue_file(writer: BackgroundWriter, run: RunStore, name: str, data: bytes) -> None:
    """A log part written atomically by the writer thread, in order with everything queued."""
    writer.submit(lambda: run.location.write_atomic(name, data), small=True)
