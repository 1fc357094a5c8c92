"""Capture and restore every RNG stream a training step can touch, as tensors (no pickle).

Training draws only from torch's generators (the data order is a pure function and needs no state),
so a keyframe holds the CPU generator state and, on GPU, each device's generator state. A run on
several processes keeps rank 0's states at the top (what a 1-process replay restores) and every
rank's under "per_rank", so each rank resumes its own streams.
"""
from __future__ import annotations

import torch

from zoo.config.seeds import derive_seed


def seed_training_stream(seed: int) -> None:
    """Seed the 'train' stream (dropout and any stochastic op) from the run's seed."""
    torch.manual_seed(derive_seed("train", seed))


def capture() -> dict:
    state = {"torch_cpu": torch.get_rng_state().clone()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = [s.clone() for s in torch.cuda.get_rng_state_all()]
    return state


def restore(state: dict) -> None:
    torch.set_rng_state(state["torch_cpu"].to(torch.uint8))
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.to(torch.uint8) for s in state["torch_cuda"]])


def for_rank(state: dict, rank: int, world_size: int) -> dict:
    """The states rank `rank` of `world_size` restores: its own when the keyframe was written by
    that many processes, else the top-level (rank 0's) states."""
    per_rank = state.get("per_rank")
    if per_rank and len(per_rank) == world_size:
        return per_rank[rank]
    return state
