"""Training state: what the next update needs, built fresh at step 0 or restored from a keyframe.

The training loop, replay and the benchmarks all build their state here, because a restore is as
bit-critical as the step itself: the environment (thread count, deterministic flags), the model,
the optimizer and LR schedule (in that order: building the schedule writes the first lr into the
optimizer, so the optimizer's saved state is loaded after it), and every RNG stream. The data
cursor needs no state: step s trains on the global batch the order function gives for s.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from zoo import environment
from zoo.config.run_config import RunConfig
from zoo.engine import rng_state
from zoo.engine.train_step import (
    STEP_OBSERVER,
    StepStats,
    load_scheduler_state,
    make_optimizer,
    make_scheduler,
    training_step,
)
from zoo.models.build import build_model
from zoo.store.run_store import RunStore
from zoo_common.errors import ZooError


@dataclass
class TrainingState:
    """A run between two updates: `step` updates have been applied to `model`."""

    cfg: RunConfig
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    step: int
    environment_then: dict | None  # the fingerprint recorded with the keyframe (None when fresh)

    def update(self, batch: torch.Tensor, *, loss_mask: torch.Tensor | None = None,
               model: torch.nn.Module | None = None,
               observe: STEP_OBSERVER | None = None, world_size: int = 1) -> StepStats:
        """Apply update `step + 1` on `batch` (and its loss mask, for a task corpus), with the
        step's arguments from the run's config. `model` is what the step runs when it is not
        `self.model` (a DistributedDataParallel)."""
        stats = training_step(model or self.model, self.optimizer, self.scheduler, batch,
                              loss_mask=loss_mask,
                              clip=self.cfg.optimizer.clip, precision=self.cfg.precision,
                              micro_batch_size=self.cfg.micro_batch_size, world_size=world_size,
                              observe=observe)
        self.step += 1
        return stats


def training_batch(corpus, ids, device: str, *, data_seed: int,
                   masked: frozenset[int] = frozenset()) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The tokens [B, T] of sample `ids` and their loss mask (None when every token is a target),
    on `device`: what one update trains on, read the same way by the loop and by replay. Drawn
    features (data_index/features.py) are float vectors [B, n], drawn from the run's data seed.
    `masked` (RunConfig.masked_at): samples whose rows get no loss, the batch trained without them."""
    if getattr(corpus, "drawn", False):
        if masked:
            raise ZooError("masking samples is for token corpora; drawn feature vectors have no "
                           "sample ids to mask")
        return torch.from_numpy(corpus.samples(ids, data_seed=data_seed)).to(device), None
    batch = torch.from_numpy(corpus.samples(ids)).to(device)
    mask = corpus.loss_mask(ids)
    rows = [k for k, i in enumerate(ids) if int(i) in masked] if masked else []
    if rows:
        mask = np.ones(batch.shape, dtype=bool) if mask is None else np.array(mask, dtype=bool)
        mask[rows] = False
        if not mask.any():
            raise ZooError(f"every sample of a batch is masked ({len(rows)} of {len(ids)}): "
                           f"mask fewer samples, so that each step keeps one to train on")
    return batch, None if mask is None else torch.from_numpy(mask).to(device)


def fresh_state(cfg: RunConfig, *, vocab_size: int, eos_token_id: int, device: str,
                threads: int | None) -> TrainingState:
    """Step 0 exactly as every rank (and every rerun) builds it: same init, same seeded streams."""
    environment.apply(device, threads=threads)
    model = build_model(cfg, vocab_size=vocab_size, eos_token_id=eos_token_id).to(device)
    rng_state.seed_training_stream(cfg.seed.seed)
    optimizer = make_optimizer(model, cfg.optimizer)
    scheduler = make_scheduler(optimizer, cfg.schedule, total_steps=cfg.steps)
    return TrainingState(cfg, model, optimizer, scheduler, 0, None)


def restore_state(run: RunStore, cfg: RunConfig, step: int, *, vocab_size: int, eos_token_id: int,
                  device: str, threads: int | None = None, rank: int = 0,
                  world_size: int = 1) -> TrainingState:
    """The state at keyframe `step`, in the recorded environment: its thread count unless
    `threads` overrides it (replay asking what another count gives), and rank `rank`'s streams."""
    keyframe = run.read_keyframe(step)
    recorded = keyframe.extra["environment"]
    environment.apply(device, threads=threads if threads is not None else recorded["threads"])
    model = build_model(cfg, vocab_size=vocab_size, eos_token_id=eos_token_id).to(device)
    model.load_state_dict(keyframe.model)
    optimizer = make_optimizer(model, cfg.optimizer)
    scheduler = make_scheduler(optimizer, cfg.schedule, total_steps=cfg.steps)
    optimizer.load_state_dict(keyframe.optimizer)
    load_scheduler_state(scheduler, keyframe.scheduler)
    rng_state.restore(rng_state.for_rank(keyframe.rng, rank, world_size))
    return TrainingState(cfg, model, optimizer, scheduler, step, recorded)
