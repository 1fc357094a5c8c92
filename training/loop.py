"""The training loop: one run (a size x seed of a family) from step 0, or from its last keyframe.

What it owns: seeding every stream from the run's seeds, feeding step s the global batch s-1 of
the data order, and writing what a researcher needs afterwards — checkpoints on the family's
schedule, keyframes to resume or replay from, the per-step data index and per-step metrics — into
the store through its API. What it does not own: the update itself (zoo.train_step, shared with
replay) and the formats (zoo.store, data_index).

Resume contract: a killed run restarts from its last keyframe; steps recorded after it are dropped
and recomputed, and end bit-identical to an uninterrupted run (same environment fingerprint).
"""
from __future__ import annotations

import os
import signal
import socket
import threading
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from data_index import Corpus, StepIndexWriter, global_batch
from data_index.errors import ZooError
from zoo import environment, rng_state
from zoo.checkpoint_policy import checkpoint_steps, keyframe_steps
from zoo.config import RunConfig
from zoo.models import build_model
from zoo.names import RunId
from zoo.run_metrics import metrics_log
from zoo.store import RunStore, Store
from zoo.train_step import make_training_state, scheduler_state, training_step

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


def train_run(
    cfg: RunConfig,
    *,
    store: Store,
    corpus: Corpus,
    device: str = "cpu",
    threads: int | None = None,
    progress: bool = True,
    stop_after_step: int | None = None,
    label: str = "",
) -> RunOutcome:
    """Train (or resume, or skip) one run into `store`; returns what happened.

    `stop_after_step` ends the process's work early as an interruption would (for tests and for
    spreading long runs over several jobs); the next call resumes from the last keyframe.
    """
    run_id = run_id_of(cfg)
    run = store.run(run_id)
    started = time.perf_counter()
    owner = f"{socket.gethostname()}:{os.getpid()}"
    with run.lock(owner):
        state = _open_or_create(cfg, run, corpus, device=device, threads=threads)
        if state is None:
            status = run.read_json("status.json")
            return RunOutcome(run_id, "skipped", status["last_step"], status["last_step"],
                              None, 0.0)
        first_step, model, optimizer, scheduler = state
        last_step, final_loss = _loop(
            cfg, run, corpus, model, optimizer, scheduler,
            first_step=first_step, device=device, progress=progress,
            stop_after_step=stop_after_step, label=label or run_id.key,
        )
    return RunOutcome(
        run_id, "resumed" if first_step > 0 else "trained", first_step, last_step, final_loss,
        time.perf_counter() - started,
    )


def _open_or_create(cfg: RunConfig, run: RunStore, corpus: Corpus, *, device: str,
                    threads: int | None):
    """Fresh run: write its records and step 0. Existing run: check it, restore its last keyframe."""
    if cfg.data.seq_len != corpus.seq_len:
        raise ZooError(f"{cfg.model_name}: data.seq_len {cfg.data.seq_len} != corpus {corpus.seq_len}")
    if cfg.batch_size > corpus.n_samples:
        raise ZooError(
            f"{cfg.model_name}: batch_size {cfg.batch_size} is larger than the corpus "
            f"({corpus.n_samples} samples of {corpus.seq_len} tokens); use a smaller batch or more data"
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
        return _resume(cfg, run, corpus, device=device, threads=threads)
    return _start(cfg, run, corpus, device=device, threads=threads)


def _start(cfg, run: RunStore, corpus: Corpus, *, device, threads):
    environment.apply(device, threads=threads)
    run.delete_after(-1)  # a run that died before its first keyframe leaves nothing to keep
    model = build_model(cfg, vocab_size=corpus.vocab_size, eos_token_id=corpus.eos_id).to(device)
    rng_state.seed_training_stream(cfg.seed.seed)
    optimizer, scheduler = make_training_state(model, cfg)
    fingerprint = environment.fingerprint(device)
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
        "hf_config": model.config.to_dict(),
        "checkpoint_steps": checkpoint_steps(cfg.checkpoints, cfg.steps),
        "keyframe_steps": keyframe_steps(cfg.checkpoints, cfg.steps),
    })
    _write_step(cfg, run, model, optimizer, scheduler, step=0, fingerprint=fingerprint,
                checkpoint=True, keyframe=True)
    run.write_json("status.json", {"last_step": 0, "finished": False, "total_steps": cfg.steps})
    return 0, model, optimizer, scheduler


def _resume(cfg, run: RunStore, corpus: Corpus, *, device, threads):
    step = run.keyframe_steps()[-1]
    keyframe = run.read_keyframe(step)
    recorded_threads = keyframe.extra["environment"]["threads"]
    if threads is not None and threads != recorded_threads:
        print(f"note: {run.run_id.key} was trained with {recorded_threads} threads; "
              f"resuming with {recorded_threads} (not {threads}) to keep its bits")
    environment.apply(device, threads=recorded_threads)
    model = build_model(cfg, vocab_size=corpus.vocab_size, eos_token_id=corpus.eos_id).to(device)
    model.load_state_dict(keyframe.model)
    optimizer, scheduler = make_training_state(model, cfg, keyframe=keyframe)
    rng_state.restore(keyframe.rng)
    run.delete_after(step)
    return step, model, optimizer, scheduler


def _write_step(cfg, run: RunStore, model, optimizer, scheduler, *, step: int, fingerprint: dict,
                checkpoint: bool, keyframe: bool) -> None:
    weights = {name: t.detach().cpu() for name, t in model.state_dict().items()}
    tokens_seen = step * cfg.batch_size * cfg.data.seq_len
    if checkpoint:
        run.write_checkpoint(step, weights, tokens_seen=tokens_seen, config_hash=cfg.config_hash())
    if keyframe:
        run.write_keyframe(
            step,
            model=weights,
            optimizer=optimizer.state_dict(),
            scheduler=scheduler_state(scheduler),
            rng=rng_state.capture(),
            extra={"data_cursor": {"next_step": step + 1, "data_seed": cfg.seed.data_seed,
                                   "batch_size": cfg.batch_size},
                   "environment": fingerprint},
            tokens_seen=tokens_seen,
            config_hash=cfg.config_hash(),
        )


def _loop(cfg, run: RunStore, corpus: Corpus, model, optimizer, scheduler, *, first_step: int,
          device: str, progress: bool, stop_after_step: int | None, label: str):
    ckpt_steps = set(checkpoint_steps(cfg.checkpoints, cfg.steps))
    key_steps = set(keyframe_steps(cfg.checkpoints, cfg.steps))
    fingerprint = run.read_json("environment.json")
    index = StepIndexWriter(run.index_location, corpus_fingerprint=corpus.fingerprint,
                            data_seed=cfg.seed.data_seed, batch_size=cfg.batch_size,
                            n_samples=corpus.n_samples, after_step=first_step)
    metrics = metrics_log(run)
    metrics.truncate_after(first_step)
    end = cfg.steps if stop_after_step is None else min(cfg.steps, stop_after_step)
    tokens_per_step = cfg.batch_size * cfg.data.seq_len
    bar = tqdm(total=cfg.steps, initial=first_step, desc=label, unit="step", disable=not progress,
               dynamic_ncols=True, leave=False)
    step, loss = first_step, None
    interrupt = _InterruptAtStepBoundary()
    try:
        for step in range(first_step + 1, end + 1):
            tic = time.perf_counter()
            ids = global_batch(step, data_seed=cfg.seed.data_seed, batch_size=cfg.batch_size,
                               n_samples=corpus.n_samples)
            batch = torch.from_numpy(corpus.samples(ids)).to(device)
            stats = training_step(model, optimizer, scheduler, batch, clip=cfg.optimizer.clip,
                                  precision=cfg.precision)
            loss = stats.loss
            wall = time.perf_counter() - tic
            index.append(step, ids)
            metrics.append({"step": [step], "loss": [stats.loss], "lr": [stats.lr],
                            "grad_norm": [stats.grad_norm], "tokens": [step * tokens_per_step],
                            "wall_time": [wall]})
            if step in key_steps:  # the keyframe must never be ahead of the index it resumes
                index.flush()
                metrics.flush()
            if step in ckpt_steps or step in key_steps:
                _write_step(cfg, run, model, optimizer, scheduler, step=step,
                            fingerprint=fingerprint, checkpoint=step in ckpt_steps,
                            keyframe=step in key_steps)
            if step in key_steps:
                run.write_json("status.json", {"last_step": step, "finished": step == cfg.steps,
                                               "total_steps": cfg.steps})
            bar.update(1)
            bar.set_postfix(loss=f"{stats.loss:.3f}", tok_s=f"{tokens_per_step / max(wall, 1e-9):,.0f}")
            if interrupt.requested:
                raise KeyboardInterrupt(f"stopped after step {step}")
    finally:
        interrupt.restore()
        index.close()
        metrics.close()
        bar.close()
    return step, loss


class _InterruptAtStepBoundary:
    """Ctrl-C finishes the step in flight, then stops: what was written stays whole and the next
    `zoo train` resumes from the last keyframe. A second Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

