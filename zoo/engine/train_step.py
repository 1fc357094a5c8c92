"""The one training step. The training loop and replay both call `training_step`: a second copy
would make replay a lie, so everything that changes weights between two steps lives here.

Also here: how the optimizer and LR schedule are built from a run's config (training_state.py
builds and restores them, for the loop and replay alike).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

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


def masked_loss(model: torch.nn.Module, batch: torch.Tensor, loss_mask: torch.Tensor):
    """Mean next-token loss over the masked targets only (a task's answer tokens), and the outputs.

    Only what the loss reads is computed: the input stops at the last position that predicts a
    target, and the model is asked for the logits of the predicting positions alone
    (`logits_to_keep`; the toy architecture then also narrows its last block). The outputs' logits
    are [batch, predicting positions, vocab], with `positions` and `targets` (-100 where a row's
    token at that position is not a target) beside them for observers.
    """
    inputs, positions = masked_inputs(batch, loss_mask)
    logits = model(input_ids=inputs, logits_to_keep=positions).logits
    return masked_targets_loss(logits, batch, loss_mask, positions)


def masked_inputs(batch: torch.Tensor, loss_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the input a masked loss needs, the positions that predict a target)."""
    wanted = loss_mask[:, 1:].any(dim=0)  # position t predicts token t + 1
    positions = torch.nonzero(wanted).reshape(-1)
    if positions.numel() == 0:
        raise ValueError("the loss mask marks no target after the first token")
    return batch[:, : int(positions[-1]) + 1], positions


def masked_targets_loss(logits: torch.Tensor, batch: torch.Tensor, loss_mask: torch.Tensor,
                        positions: torch.Tensor):
    """(loss, outputs) of `masked_loss` from the predicting positions' logits."""
    targets = batch[:, positions + 1].masked_fill(~loss_mask[:, positions + 1], -100)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                             targets.reshape(-1), ignore_index=-100)
    return loss, SimpleNamespace(loss=loss, logits=logits, positions=positions, targets=targets)


def _forward_loss(model: torch.nn.Module, batch: torch.Tensor, loss_mask: torch.Tensor | None,
                  precision: str):
    """(loss, outputs) of one forward pass: every token's next-token loss, or the masked one; a
    float batch is feature vectors (the superposition model), whose loss the model computes."""
    with torch.autocast(batch.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        if batch.is_floating_point():
            outputs = model(features=batch)
            return outputs.loss, outputs
        if loss_mask is None:
            outputs = model(input_ids=batch, labels=batch)
            return outputs.loss, outputs
        return masked_loss(model, batch, loss_mask)


def training_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    batch: torch.Tensor,
    *,
    loss_mask: torch.Tensor | None = None,
    clip: float,
    precision: str = "fp32",
    observe: STEP_OBSERVER | None = None,
    micro_batch_size: int | None = None,
    world_size: int = 1,
) -> StepStats:
    """One optimizer update on `batch` [B, T]: the next-token loss over every position, or, with
    `loss_mask` (bool [B, T], True where a token is a target), over the masked targets only.

    `batch` is this process's share of the global batch. With `world_size` > 1 the default
    torch.distributed process group joins the processes: without `micro_batch_size` the model is
    a DistributedDataParallel that all-reduces gradients in backward (fast; the bits depend on the
    world size); with it, gradients take the world-size-invariant path (`_invariant_gradients`).
    The reported loss is the mean over the global batch either way.

    `observe(model, batch, outputs)` runs after backward and before clipping and the update, so an
    instrumented replay sees exactly the gradients this update used.
    """
    # train() walks every module, so only when needed; a DistributedDataParallel wrapper starts in
    # training mode around a model built in eval mode
    if not (model.training and getattr(model, "module", model).training):
        model.train()
    optimizer.zero_grad(set_to_none=True)
    if micro_batch_size:
        loss, outputs = _invariant_gradients(
            model, batch, loss_mask, micro_batch_size=micro_batch_size, precision=precision,
            world_size=world_size, keep_logits=observe is not None,
        )
    else:
        loss, outputs = _forward_loss(model, batch, loss_mask, precision)
        if observe is None:
            # Let the logits (batch x seq x vocab) go before backward: held through backward and
            # the update they sit beside the loss's own saved copy, doubling that peak (GiBs at
            # real vocab sizes). Only an observer needs them.
            outputs = None
        loss.backward()
        loss = loss.detach()
        if world_size > 1:
            import torch.distributed as dist

            loss = loss.clone()
            dist.all_reduce(loss)
            loss = loss / world_size
    if observe is not None:
        observe(model, batch, outputs)
    return apply_update(model, optimizer, scheduler, loss=loss, clip=clip)


def apply_update(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler, *,
                 loss: torch.Tensor, clip: float) -> StepStats:
    """The update from the gradients in the parameters' .grad: clip their global norm, one AdamW
    step, the schedule's next LR. One run's step and a stacked step (stacked_step.py) share it."""
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip if clip > 0 else math.inf)
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    scheduler.step()
    return StepStats(loss=float(loss), grad_norm=float(grad_norm), lr=float(lr))


def _invariant_gradients(model: torch.nn.Module, batch: torch.Tensor, loss_mask: torch.Tensor | None,
                         *, micro_batch_size: int,
                         precision: str, world_size: int, keep_logits: bool):
    """Set every parameter's .grad to the mean of per-micro-batch gradients, summed one by one in
    the global micro-batch order, and return (global mean loss, outputs).

    Why not all-reduce: a reduction's association order depends on the number of processes, so
    its bits do too. Here each micro-batch (fixed shape) gets its own backward pass, every process
    gathers all flat micro-batch gradients, and adds them in the same sequence 0, 1, 2, ... that a
    single process uses: N processes produce the bits of 1 (given 1 thread per process).
    """
    if batch.shape[0] % micro_batch_size:
        raise ValueError(f"local batch of {batch.shape[0]} is not a multiple of micro_batch_size "
                         f"{micro_batch_size}")
    params = [p for p in model.parameters() if p.requires_grad]
    flat_grads, losses, logits = [], [], []
    masks = loss_mask.split(micro_batch_size) if loss_mask is not None else [None] * len(batch.split(micro_batch_size))
    for chunk, chunk_mask in zip(batch.split(micro_batch_size), masks):
        for param in params:
            param.grad = None
        _, out = _forward_loss(model, chunk, chunk_mask, precision)
        out.loss.backward()
        flat_grads.append(torch.cat([
            (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params
        ]))
        losses.append(out.loss.detach().float().reshape(1))
        if keep_logits:
            logits.append(out.logits.detach())
    grads, loss_values = torch.stack(flat_grads), torch.cat(losses)  # [k, P], [k]
    if world_size > 1:
        grads, loss_values = _gather_in_rank_order(grads), _gather_in_rank_order(loss_values)
    total, loss = grads[0].clone(), loss_values[0].clone()
    for g in range(1, grads.shape[0]):  # the fixed global order: micro-batch 0, 1, 2, ...
        total += grads[g]
        loss += loss_values[g]
    total /= grads.shape[0]
    loss /= grads.shape[0]
    offset = 0
    for param in params:
        param.grad = total[offset:offset + param.numel()].view_as(param)
        offset += param.numel()
    outputs = SimpleNamespace(loss=loss, logits=torch.cat(logits) if keep_logits else None)
    return loss, outputs


def _gather_in_rank_order(local: torch.Tensor) -> torch.Tensor:
    """Concatenate every process's `local` along dim 0, rank 0 first (all ranks get all)."""
    import torch.distributed as dist

    parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, local.contiguous())
    return torch.cat(parts)
