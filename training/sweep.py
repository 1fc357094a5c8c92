"""Sweeps: every size x seed of a family, one after another, or as independent commands.

`train_family` is what `zoo train MANIFEST` runs. `plan_commands` prints one self-contained
command per run so a cluster scheduler (a Slurm array, xargs -P) can spread them; each command
resumes or skips on its own, so re-submitting a whole plan is safe.
"""
from __future__ import annotations

import os
import shlex
import sys

from zoo_common.errors import ZooError
from training.distributed import SINGLE, World, barrier
from training.loop import RunOutcome, train_run
from zoo.config.run_config import FamilyConfig, RunConfig
from zoo.store.corpora import ensure_corpus
from zoo.config.manifest import load_manifest
from zoo.store.store import Store


def select_runs(family: FamilyConfig, only: list[str] | None) -> list[RunConfig]:
    """Runs named by `--only` entries `SIZE` or `SIZE/SEED`; all runs when `only` is empty."""
    runs = family.runs()
    if not only:
        return runs
    chosen: list[RunConfig] = []
    for entry in only:
        size, _, seed = entry.partition("/")
        matches = [r for r in runs if r.size.name == size and (not seed or str(r.seed.seed) == seed)]
        if not matches:
            valid = ", ".join(f"{r.size.name}/{r.seed.seed}" for r in runs)
            raise ZooError(f"--only {entry!r} matches no run of family {family.family}; valid: {valid}")
        chosen += [r for r in matches if r not in chosen]
    return chosen


def plan_commands(manifest: str, *, store_url: str, only: list[str] | None = None,
                  nproc: int | None = None) -> list[str]:
    """One `zoo train` command per run; with `nproc`, each trains its run on that many processes.
    A manifest file and a local store are named by absolute path: a scheduler's job may start in
    another directory."""
    family = load_manifest(manifest)
    processes = f" --nproc {nproc}" if nproc and nproc > 1 else ""
    if os.path.isfile(manifest):
        manifest = os.path.abspath(manifest)
    if "://" not in store_url:
        store_url = os.path.abspath(store_url)
    return [
        f"zoo train {shlex.quote(manifest)} --only {r.size.name}/{r.seed.seed} "
        f"--store {shlex.quote(store_url)}{processes}"
        for r in select_runs(family, only)
    ]


def train_family(
    manifest: str,
    *,
    store: Store,
    only: list[str] | None = None,
    device: str = "cpu",
    threads: int | None = None,
    progress: bool = True,
    stop_after_step: int | None = None,
    hold_after_step: int | None = None,
    world: World = SINGLE,
) -> list[RunOutcome]:
    """Train the selected runs one after another; every rank of `world` calls this alike."""
    family = load_manifest(manifest)
    runs = select_runs(family, only)
    progress = progress and world.is_main
    if not world.is_main:
        barrier(world)  # rank 0 prepares and publishes the corpus; the others then find it ready
    corpus = ensure_corpus(store, family.data, progress=progress)
    if world.is_main:
        barrier(world)
    outcomes = []
    for k, cfg in enumerate(runs, start=1):
        label = f"run {k}/{len(runs)} {cfg.model_name} seed {cfg.seed.seed}"
        outcome = train_run(cfg, store=store, corpus=corpus, device=device, threads=threads,
                            progress=progress, stop_after_step=stop_after_step,
                            hold_after_step=hold_after_step, label=label, world=world)
        outcomes.append(outcome)
        if progress:
            _report(label, outcome)
    return outcomes


def _report(label: str, outcome: RunOutcome) -> None:
    if outcome.status == "skipped":
        print(f"{label}: already finished at step {outcome.last_step}, skipped", file=sys.stderr)
        return
    loss = f"{outcome.final_loss:.4f}" if outcome.final_loss is not None else "n/a"
    origin = f" (resumed from step {outcome.first_step})" if outcome.status == "resumed" else ""
    print(f"{label}: step {outcome.last_step}, loss {loss}, {outcome.seconds:.1f}s{origin}",
          file=sys.stderr)
