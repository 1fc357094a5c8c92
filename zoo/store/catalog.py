"""What a store holds, by model name: the models, their seeds and stored steps, and one run.

`open_run` is the one way from a (name, seed[, branch]) to a run's folder; its errors list what
exists. Branches are listed under their model (`ModelInfo.branches`), not as models of their own.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from zoo_common.errors import (
    BranchNotFoundError,
    ModelNotFoundError,
    SeedNotFoundError,
    StoreNotFoundError,
)
from zoo.config.names import RunId
from zoo.store.run_store import RunStore
from zoo.store.store import Store


@dataclass(frozen=True)
class ModelInfo:
    name: str  # <family>-<size>
    family: str
    size: str
    seeds: tuple[int, ...]
    steps: dict[int, tuple[int, ...]]  # seed -> stored checkpoint steps
    branches: dict[str, tuple[int, ...]] = None  # branch label -> the seeds that have it

    def __post_init__(self) -> None:
        if self.branches is None:
            object.__setattr__(self, "branches", {})


def list_models(*, store: str | os.PathLike | Store | None = None) -> list[ModelInfo]:
    """Every model name in the store with its seeds and stored steps, and its branches."""
    store = open_store(store)
    grouped: dict[tuple[str, str], dict[int, tuple[int, ...]]] = {}
    branched: dict[tuple[str, str], dict[str, list[int]]] = {}
    for run_id in store.runs():
        steps = tuple(store.run(run_id).checkpoint_steps())
        if not steps:  # a run folder with no checkpoint yet (training just started) is not a model
            continue
        if run_id.branch:
            branched.setdefault((run_id.family, run_id.size), {}).setdefault(
                run_id.branch, []).append(run_id.seed)
        else:
            grouped.setdefault((run_id.family, run_id.size), {})[run_id.seed] = steps
    return [
        ModelInfo(f"{family}-{size}", family, size, tuple(sorted(by_seed)), dict(sorted(by_seed.items())),
                  {label: tuple(sorted(seeds))
                   for label, seeds in sorted(branched.get((family, size), {}).items())})
        for (family, size), by_seed in grouped.items()  # in the store's natural run order
    ]


def open_run(name: str, *, seed: int, store: str | os.PathLike | Store | None = None,
             branch: str | None = None) -> RunStore:
    """The stored run for a model name and seed (`run.store` is its store), or its branch
    `branch` (also written `name@label`); errors list what exists."""
    store = open_store(store)
    run_id = RunId.from_name(name, seed, branch)
    run = store.run(run_id)
    if run.checkpoint_steps():  # [] when the run has no folder
        return run
    if run_id.branch:
        parent = open_run(run_id.model_name, seed=seed, store=store)
        labels = sorted(r.branch for r in store.runs()
                        if r.branch and r.without_branch() == parent.run_id)
        raise BranchNotFoundError(f"no branch {run_id.branch!r} of {parent.run_id} in store {store.url}; its "
                       f"branches: {', '.join(labels) or 'none (make one with `zoo branch`)'}")
    models = list_models(store=store)
    match = [m for m in models if m.name == name]
    if not match:
        names = ", ".join(m.name for m in models) or "none (train one with `zoo train tiny`)"
        raise ModelNotFoundError(f"no model {name!r} in store {store.url}; models: {names}")
    seeds = ", ".join(str(s) for s in match[0].seeds)
    raise SeedNotFoundError(f"no seed {seed} for {name} in store {store.url}; seeds: {seeds}")


def steps(name: str, *, seed: int, store: str | os.PathLike | Store | None = None,
          branch: str | None = None) -> list[int]:
    """Stored checkpoint steps of a run (of a branch: from its branch point on), ascending."""
    return open_run(name, seed=seed, store=store, branch=branch).checkpoint_steps()


def open_store(store: str | os.PathLike | Store | None = None) -> Store:
    """The store every read opens. A folder or URL holding no store is an error, not an empty
    store: almost always a mistyped path (or the default ./zoo-store in another folder)."""
    if isinstance(store, Store):
        return store
    opened = Store.open(store)
    if not opened.exists():
        raise StoreNotFoundError(f"no Model Zoo store at {opened.url}: nothing was ever trained there; check "
                       f"the path (store=..., else $ZOO_STORE, else ./zoo-store)")
    return opened
