"""Tensor history: one named tensor across many steps, e.g. a layer's query weights over training.

A training-dynamics query no checkpoint suite offers directly: instead of materializing whole
checkpoints (every tensor of every step), it reads only that tensor's blob from each checkpoint
manifest (`RunStore.read_tensor`), verified like every store read. Identical blobs across steps are
read once (content addressing makes that free to detect).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

import torch

from zoo_common.progress import progress as progress_bar
from zoo_common.arguments import whole_number
from zoo_common.errors import NotFoundError, StepNotFoundError, ZooError
from zoo.store.store import Store
from zoo.store.records import format_steps


@dataclass(frozen=True)
class TensorHistory:
    """`values[i]` is the tensor at `steps[i]`; steps ascend as integers."""

    name: str
    tensor: str
    seed: int
    steps: list[int]
    values: torch.Tensor  # [n_steps, *shape]

    def norms(self) -> torch.Tensor:
        """Frobenius norm per step (float64)."""
        return self.values.double().flatten(1).norm(dim=1)

    def changes(self) -> torch.Tensor:
        """Norm of the change from each step to the next, [n_steps - 1] (float64)."""
        return self.values.double().flatten(1).diff(dim=0).norm(dim=1)


def tensor_history(name: str, *, seed: int, tensor: str, steps: list[int] | None = None,
                   store: str | Store | None = None, progress: bool = False,
                   branch: str | None = None) -> TensorHistory:
    """The tensor `tensor` of (name, seed) at every stored step (or at `steps`, all stored); of a
    branch, at the steps the branch stored (its branch point on)."""
    from zoo.store.catalog import open_run, open_store

    store = open_store(store)
    run = open_run(name, seed=seed, store=store, branch=branch)
    if not isinstance(tensor, str):
        raise ZooError(f"tensor must be a tensor's name (a string), got {tensor!r}")
    stored = run.checkpoint_steps()
    wanted = stored if steps is None else _check_steps(steps, stored, run)
    if not wanted:
        raise ZooError("steps is empty: give at least one stored step, or None for all")
    refs = {step: run.checkpoint_manifest(step)["tensors"] for step in wanted}
    names = list(refs[wanted[0]])
    if tensor not in names:
        close = difflib.get_close_matches(tensor, names, n=5, cutoff=0.4) or names[:5]
        listed = f"; all {len(names)}: {', '.join(names)}" if len(names) <= 60 else ""
        raise NotFoundError(f"{run.run_id} has no tensor {tensor!r}; closest: {', '.join(close)}{listed}")
    by_blob: dict[str, torch.Tensor] = {}
    values = []
    for step in progress_bar(wanted, desc=f"history {tensor}", unit="step", enabled=progress):
        ref = refs[step].get(tensor)
        if ref is None:
            raise NotFoundError(f"{run.run_id} step {step} has no tensor {tensor!r}; the run's "
                           f"checkpoints disagree on their tensor names (run `zoo verify`)")
        blob = ref.get("blob") if isinstance(ref, dict) else None
        if blob not in by_blob:
            by_blob[blob] = run.read_tensor(step, tensor)
        values.append(by_blob[blob])
    shapes = {tuple(v.shape) for v in values}
    if len(shapes) != 1:
        raise ZooError(f"{run.run_id} tensor {tensor!r} changes shape across steps: {sorted(shapes)}")
    return TensorHistory(name, tensor, seed, list(wanted), torch.stack(values))


def _check_steps(steps: list[int], stored: list[int], run) -> list[int]:
    if isinstance(steps, (str, bytes)) or not hasattr(steps, "__iter__"):
        raise ZooError(f"steps must be a list of stored steps (or None for all), got {steps!r}")
    steps = [whole_number(s, "each of steps") for s in steps]
    bad = [s for s in steps if s not in stored]
    if bad:
        raise StepNotFoundError(f"no stored checkpoint at step(s) {', '.join(map(str, bad))} for "
                       f"{run.run_id}; stored: {format_steps(stored)} (history reads stored "
                       f"checkpoints only; `zoo snapshot` replays any other step)")
    return sorted(set(steps))
