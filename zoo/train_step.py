"""The one training step. The training loop and replay both call `training_step`: a second copy
would make replay a lie, so everything that changes weights between two steps lives here.

Also here: how the optimizer and LR schedule are built from a run's config, because replay must
rebuild them exactly as training did before loading a keyframe's state into them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

STEP_OBSERVER = Callable[[torch.nn.Module, torch.Tensor, object], None]


@dataclass(frozen=True)
class StepStats:
    loss: float
    grad_norm: float  # before clipping
    lr: float  # the learning rate this step used


def make_optimizer(model: torch.nn.Module, optimizer_cfg) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (biases, norms and gains are not decayed)."""
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": optimizer_cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups, lr=optimizer_cfg.lr, betas=tuple(optimizer_cfg.betas), eps=optimizer_cfg.eps
    )


def lr_multiplier(index: int, *, schedule_cfg, total_steps: int) -> float:
    """Multiplier of the base LR for update number `index` (0-based: step s uses index s-1)."""
    warmup = schedule_cfg.warmup_steps
    if warmup > 0 and index < warmup:
        return (index + 1) / warmup
    if schedule_cfg.kind == "constant":
        return 1.0
    span = max(1, total_steps - warmup)
    progress = min(1.0, (index - warmup) / span)
    floor = schedule_cfg.min_lr_ratio
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class _Multiplier:
    """A picklable-free, state-free callable so the scheduler's state_dict is plain data."""

    def __init__(self, schedule_cfg, total_steps: int):
        self.schedule_cfg, self.total_steps = schedule_cfg, total_steps

    def __call__(self, index: int) -> float:
        return lr_multiplier(index, schedule_cfg=self.schedule_cfg, total_steps=self.total_steps)


def make_scheduler(optimizer: torch.optim.Optimizer, schedule_cfg, *, total_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _Multiplier(schedule_cfg, total_steps))


def scheduler_state(scheduler) -> dict:
    """The scheduler's position as plain data (the multiplier is rebuilt from config, not stored)."""
    state = scheduler.state_dict()
    state.pop("lr_lambdas", None)
    return state


def load_scheduler_state(scheduler, state: dict) -> None:
    scheduler.load_state_dict({**state, "lr_lambdas": [None] * len(scheduler.lr_lambdas)})


def training_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    batch: torch.Tensor,
    *,
    clip: float,
    precision: str = "fp32",
    observe: STEP_OBSERVER | None = None,
) -> StepStats:
    """One optimizer update on `batch` [B, T] (next-token loss over every position).

    `observe(model, batch, outputs)` runs after backward and before clipping and the update, so an
    instrumented replay sees exactly the gradients this update used.
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    device_type = batch.device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        outputs = model(input_ids=batch, labels=batch)
    loss = outputs.loss
    loss.backward()
    if observe is not None:
        observe(model, batch, outputs)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip if clip > 0 else math.inf)
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    scheduler.step()
    return StepStats(loss=float(loss.detach()), grad_norm=float(grad_norm), lr=float(lr))


def make_training_state(model: torch.nn.Module, cfg, *, keyframe=None):
    """(optimizer, scheduler) for a run, fresh or restored from a keyframe.

    The order matters: building LambdaLR writes lr = base_lr * multiplier(0) into the optimizer,
    so the optimizer's saved state (its current lr) must be loaded after, then the scheduler's.
    """
    optimizer = make_optimizer(model, cfg.optimizer)
    scheduler = make_scheduler(optimizer, cfg.schedule, total_steps=cfg.steps)
    if keyframe is not None:
        optimizer.load_state_dict(keyframe.optimizer)
        load_scheduler_state(scheduler, keyframe.scheduler)
    return optimizer, scheduler
