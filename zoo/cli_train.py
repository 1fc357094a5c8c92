"""`zoo train`: the write side, reached lazily so that reading the zoo never imports training."""
from __future__ import annotations

import argparse
import os

from zoo.cli_common import add_store_argument, open_store

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
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for a new run (recorded; resume restores the recorded count)")
    parser.add_argument("--device", default="cpu",
                        help="cpu (default), cuda, cuda:1, ...; with several processes, cuda means "
                             "one GPU per process")
    parser.add_argument("--nproc", type=int, default=None, metavar="N",
                        help="train on N processes of this machine (launches torchrun: gloo on "
                             "CPU, nccl on GPU); with --plan, each printed command gets --nproc N")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.set_defaults(handler=_train)


def _train(args) -> int:
    from training.distributed import launch, shutdown, world_from_env
    from training.sweep import plan_commands, train_family

    store_url = args.store or os.environ.get("ZOO_STORE") or "./zoo-store"
    if args.plan:
        for command in plan_commands(args.manifest, store_url=store_url, only=args.only,
                                     nproc=args.nproc):
            print(command)
        return 0
    if args.nproc is not None and args.nproc > 1:
        return launch(args.manifest, nproc=args.nproc, store_url=store_url, only=args.only,
                      threads=args.threads, device=args.device, quiet=args.quiet)
    world = world_from_env(args.device)  # torchrun's environment, or a single process
    try:
        train_family(args.manifest, store=open_store(args), only=args.only, device=args.device,
                     threads=args.threads, progress=not args.quiet, world=world)
    finally:
        shutdown(world)
    return 0
