"""`zoo train`: the write side, reached lazily so that reading the zoo never imports training."""
from __future__ import annotations

import argparse
import os

from zoo.cli.common import add_store_argument, device_name, open_store, positive_int

EPILOG = """\
examples:
  zoo train manifests/tiny.yaml                 every size x seed of the family, with progress
  zoo train tiny --only 2l128/1 --only 1l64     one run, and every seed of one size
  zoo train tiny --plan | xargs -P 2 -I{} sh -c '{}'   independent commands for a scheduler
  zoo train tiny --only 2l128/1 --nproc 2       one run on 2 processes (DDP via torchrun)
  torchrun --nproc-per-node 2 -m training tiny --only 2l128/1    the same, launched by hand

A run that was interrupted resumes from its last keyframe; a finished run is skipped; a run
whose manifest changed is refused with the names of the changed fields. A run resumes on the
number of processes it was trained on (any number with micro_batch_size in the manifest).
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train every size x seed of a family into the store", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a family from its manifest (a path, or a built-in name like 'tiny').",
    )
    parser.add_argument("manifest", help="manifests/FAMILY.yaml or a built-in family name")
    add_store_argument(parser)
    parser.add_argument("--only", action="append", metavar="SIZE[/SEED]",
                        help="train only these runs (repeatable)")
    parser.add_argument("--plan", action="store_true",
                        help="print one independent command per run and exit")
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="CPU threads for a new run (recorded; resume restores the recorded count)")
    parser.add_argument("--device", type=device_name, default="cpu",
                        help="cpu (default), cuda, cuda:1, ...; with several processes, cuda means "
                             "one GPU per process")
    parser.add_argument("--nproc", type=positive_int, default=None, metavar="N",
                        help="train on N processes of this machine (launches torchrun: gloo on "
                             "CPU, nccl on GPU); with --plan, each printed command gets --nproc N")
    parser.add_argument("--stop-after-step", type=positive_int, default=None, metavar="N",
                        help="train up to step N, then stop (run the same command to go on from "
                             "the last keyframe)")
    parser.add_argument("--hold-after-step", type=positive_int, default=None,
                        help=argparse.SUPPRESS)  # tests: wait after step N for a signal
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.set_defaults(handler=_train)


def _train(args) -> int:
    from zoo.config.manifest import load_manifest

    load_manifest(args.manifest)  # a typo in the manifest is reported before torch loads
    from training.distributed import launch, shutdown, world_from_env
    from training.sweep import plan_commands, train_family
    from zoo.store.store import resolve_store_url

    store_url = resolve_store_url(args.store)
    if args.plan:
        if args.nproc is not None and args.nproc > 1:
            _check_nproc(args, here=False)
        for command in plan_commands(args.manifest, store_url=store_url, only=args.only,
                                     nproc=args.nproc):
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
        train_family(args.manifest, store=open_store(args, must_exist=False), only=args.only,
                     device=args.device, threads=args.threads, progress=not args.quiet,
                     stop_after_step=args.stop_after_step, hold_after_step=args.hold_after_step,
                     world=world)
    finally:
        shutdown(world)
    return 0


def _check_nproc(args, *, here: bool = True) -> None:
    """Refuse a process count before torchrun starts N processes that would each fail: it must
    split every selected run's batch, and (`here`: run on this machine) not exceed its cores or
    GPUs."""
    from zoo_common.errors import ZooError
    from training.distributed import check_world_size
    from training.sweep import select_runs
    from zoo.config.manifest import load_manifest

    for cfg in select_runs(load_manifest(args.manifest), args.only):
        check_world_size(cfg, args.nproc)
    if not here:
        return
    if args.device.startswith("cuda"):
        import torch

        if args.nproc > torch.cuda.device_count():
            raise ZooError(f"--nproc {args.nproc} with --device cuda needs one GPU per process; "
                           f"this machine has {torch.cuda.device_count()}")
    elif args.nproc > (os.cpu_count() or 1):
        raise ZooError(f"--nproc {args.nproc} on a machine with {os.cpu_count()} CPU cores: each "
                       f"process needs a core of its own (use at most {os.cpu_count()})")
