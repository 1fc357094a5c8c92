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

A run that was interrupted resumes from its last keyframe; a finished run is skipped; a run
whose manifest changed is refused with the names of the changed fields.
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
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.set_defaults(handler=_train)


def _train(args) -> int:
    from training.sweep import plan_commands, train_family

    if args.plan:
        store_url = args.store or os.environ.get("ZOO_STORE") or "./zoo-store"
        for command in plan_commands(args.manifest, store_url=store_url, only=args.only):
            print(command)
        return 0
    train_family(args.manifest, store=open_store(args), only=args.only, device=args.device,
                 threads=args.threads, progress=not args.quiet)
    return 0
