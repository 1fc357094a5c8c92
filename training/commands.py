"""The `zoo train` and `zoo branch` commands' work, once zoo/cli has parsed their arguments.

zoo/cli parses (so `zoo --help` never imports training) and reaches these through the one table
of routes up (zoo/write_side.py).
"""
from __future__ import annotations

import os

from zoo_common.errors import ArgumentError
from training.branching import branch
from training.distributed import check_world_size, launch, shutdown, world_from_env
from training.session import Controls
from training.sweep import plan_commands, select_runs, train_family
from zoo.cli.common import open_store
from zoo.config.manifest import load_manifest
from zoo.store.store import resolve_store_url


def train_command(args) -> int:
    """`zoo train` with its parsed arguments (zoo/cli/train.py parses them)."""
    store_url = resolve_store_url(args.store)
    if args.stack and args.nproc is not None and args.nproc > 1:
        raise ArgumentError(f"--stack trains several runs in one process, --nproc {args.nproc} one "
                            f"run over {args.nproc} processes: use one or the other")
    if args.plan:
        if args.nproc is not None and args.nproc > 1:
            _check_nproc(args, here=False)
        for command in plan_commands(args.manifest, store_url=store_url, only=args.only,
                                     nproc=args.nproc, stack=args.stack):
            print(command)
        return 0
    if args.nproc is not None and args.nproc > 1:
        _check_nproc(args)
        return launch(args.manifest, nproc=args.nproc, store_url=store_url, only=args.only,
                      threads=args.threads, device=args.device, quiet=args.quiet,
                      stop_after_step=args.stop_after_step,
                      hold_after_step=args.hold_after_step)
    world = world_from_env(args.device)  # torchrun's environment, or a single process
    try:
        controls = Controls(device=args.device, threads=args.threads, progress=not args.quiet,
                            stack=args.stack, stop_after_step=args.stop_after_step,
                            hold_after_step=args.hold_after_step, world=world)
        train_family(args.manifest, store=open_store(args, must_exist=False), only=args.only,
                     controls=controls)
    finally:
        shutdown(world)
    return 0


def _check_nproc(args, *, here: bool = True) -> None:
    """Refuse a process count before torchrun starts N processes that would each fail: it must
    split every selected run's batch, and (`here`: run on this machine) not exceed its cores or
    GPUs."""
    for cfg in select_runs(load_manifest(args.manifest), args.only):
        check_world_size(cfg, args.nproc)
    if not here:
        return
    if args.device.startswith("cuda"):
        import torch

        if args.nproc > torch.cuda.device_count():
            raise ArgumentError(f"--nproc {args.nproc} with --device cuda needs one GPU per "
                                f"process; this machine has {torch.cuda.device_count()}")
    elif args.nproc > (os.cpu_count() or 1):
        raise ArgumentError(f"--nproc {args.nproc} on a machine with {os.cpu_count()} CPU "
                            f"cores: each process needs a core of its own (use at most {os.cpu_count()})")


def branch_command(args, *, seed, name: str, parent: str | None, interventions: dict) -> int:
    """`zoo branch` with its parsed arguments and the interventions read from its files."""
    controls = Controls(device=args.device, progress=not args.quiet,
                        stop_after_step=args.stop_after_step, hold_after_step=args.hold_after_step)
    outcomes = branch(name, seed=seed, from_step=args.from_step, label=args.label,
                      until_step=args.until_step, store=open_store(args), parent=parent or None,
                      resume=args.resume, controls=controls, **interventions)
    for outcome in outcomes if isinstance(outcomes, list) else [outcomes]:
        loss = "" if outcome.final_loss is None else f", final loss {outcome.final_loss:.4f}"
        print(f"{outcome.run_id.key}: {outcome.status} steps {outcome.first_step + 1}.."
              f"{outcome.last_step} in {outcome.seconds:.1f} s{loss}")
    return 0
