"""Sweeps: every size x seed of a family, one after another, or as independent commands.

`train_family` is what `zoo train MANIFEST` runs. `plan_commands` prints one self-contained
command per run so a cluster scheduler (a Slurm array, xargs -P) can spread them; each command
resumes or skips on its own, so re-submitting a whole plan is safe.
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import sys

from zoo_common.arguments import whole_number
from zoo_common.errors import ZooError
from training.distributed import barrier
from training.loop import RunOutcome, train_run
from training.session import Controls
from training.stacked import print_description, stack_groups, train_stack
from zoo.config.run_config import FULL_BATCH, FamilyConfig, RunConfig
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
                  nproc: int | None = None, stack: bool | None = None) -> list[str]:
    """One `zoo train` command per stack of runs (per run with `nproc` > 1, each on that many
    processes, or without `stack`). A manifest file and a local store are named by absolute path:
    a scheduler's job may start in another directory."""
    family = load_manifest(manifest)
    several = bool(nproc and nproc > 1)
    processes = f" --nproc {nproc}" if several else ""
    if os.path.isfile(manifest):
        manifest = os.path.abspath(manifest)
    if "://" not in store_url:
        store_url = os.path.abspath(store_url)
    groups = stack_groups(select_runs(family, only), Controls(stack=False if several else stack))
    return [
        f"zoo train {shlex.quote(manifest)} "
        + " ".join(f"--only {r.size.name}/{r.seed.seed}" for r in members)
        + f" --store {shlex.quote(store_url)}{processes}"
        + (" --stack" if stack and len(members) > 1 else "")
        for members, _ in groups
    ]


def train(manifest: str, *, store: str | os.PathLike | Store | None = None,
          only: list[str] | None = None, device: str = "cpu", threads: int | None = None,
          progress: bool = True, stack: bool | None = None) -> list[RunOutcome]:
    """`zoo.train`: train every size x seed of a family (a built-in name like "superposition",
    or a manifest path) into `store` ($ZOO_STORE, else ./zoo-store), one run after another.

    Finished runs are skipped and interrupted ones resume from their last keyframe, so calling it
    again is safe; `only` picks runs as `zoo train --only` does ("2l128" or "2l128/1"). `stack`:
    True trains the seeds of a size together as one stacked computation (the same bits as one by
    one), False one by one, None (default) stacks where it was measured faster (the superposition
    model). Returns one RunOutcome per run (trained, resumed or skipped)."""
    from zoo.environment import check_device

    opened = store if isinstance(store, Store) else Store.open(store)
    if threads is not None:
        threads = whole_number(threads, "threads", minimum=1)
    return train_family(manifest, store=opened, only=list(only) if only else None,
                        controls=Controls(device=check_device(device), threads=threads,
                                          progress=progress, stack=stack))


def train_family(manifest: str, *, store: Store, only: list[str] | None = None,
                 controls: Controls | None = None, **control_values) -> list[RunOutcome]:
    """Train the selected runs one after another; every rank of the controls' world calls this
    alike. How to train comes as `controls`, or as its fields (device=, threads=, progress=, ...)."""
    if controls is None:
        controls = Controls(**control_values)
    elif control_values:
        controls = dataclasses.replace(controls, **control_values)
    family = load_manifest(manifest)
    runs = select_runs(family, only)
    world = controls.world
    progress = controls.shows_progress
    if not world.is_main:
        barrier(world)  # rank 0 prepares and publishes the corpora; the others then find them ready
    corpora = {}  # one per data section: a size may have data of its own (SizeConfig.source)
    for cfg in runs:
        if cfg.data not in corpora:
            corpora[cfg.data] = ensure_corpus(store, cfg.data, progress=progress)
    if world.is_main:
        barrier(world)
    runs = [resolved_batch(cfg, corpora[cfg.data]) for cfg in runs]
    groups = stack_groups(runs, controls)
    if progress:
        print_description(groups)
    outcomes, done = [], 0
    for members, _ in groups:
        numbers = (f"run {done + 1}" if len(members) == 1
                   else f"runs {done + 1}-{done + len(members)}")
        cfg = members[0]
        label = f"{numbers}/{len(runs)} {cfg.model_name} seed " + ",".join(
            str(member.seed.seed) for member in members)
        stacked = None
        if len(members) > 1:
            stacked = train_stack(members, store=store, corpus=corpora[cfg.data],
                                  controls=controls, label=label)
        if stacked is None:  # alone (or runs that cannot stack as they stand): one by one
            stacked = [train_run(member, store=store, corpus=corpora[member.data],
                                 controls=controls,
                                 label=f"run {done + k}/{len(runs)} {member.model_name} seed "
                                       f"{member.seed.seed}")
                       for k, member in enumerate(members, start=1)]
        for member, outcome in zip(members, stacked):
            outcomes.append(outcome)
            if progress:
                _report(f"{member.model_name} seed {member.seed.seed}", outcome)
        done += len(members)
    return outcomes


def resolved_batch(cfg: RunConfig, corpus) -> RunConfig:
    """`batch_size: full` as the number it means for this run: its whole train split (the train
    split depends on the data seed's split of a task, or is the whole corpus). Runs record that
    number, so a manifest that said 3831 and one that says full are the same run."""
    if cfg.batch_size != FULL_BATCH:
        return cfg
    if getattr(corpus, "drawn", False):
        raise ZooError(f"{cfg.model_name}: batch_size full means the whole train split, and "
                       f"drawn features have no end; give a number")
    return dataclasses.replace(cfg, batch_size=len(corpus.train_ids(cfg.seed.data_seed)))


def _report(label: str, outcome: RunOutcome) -> None:
    if outcome.status == "skipped":
        print(f"{label}: already finished at step {outcome.last_step}, skipped", file=sys.stderr)
        return
    loss = f"{outcome.final_loss:.4f}" if outcome.final_loss is not None else "n/a"
    origin = f" (resumed from step {outcome.first_step})" if outcome.status == "resumed" else ""
    print(f"{label}: step {outcome.last_step}, loss {loss}, {outcome.seconds:.1f}s{origin}",
          file=sys.stderr)
