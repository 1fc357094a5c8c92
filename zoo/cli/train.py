"""`zoo train`: the write side, reached lazily so that reading the zoo never imports training."""
from __future__ import annotations

import argparse

from zoo.cli.common import add_store_argument, device_name, positive_int

EPILOG = """\
examples:
  zoo train manifests/tiny.yaml                 every size x seed of the family, with progress
  zoo train tiny --only 2l128/1 --only 1l64     one run, and every seed of one size
  zoo train tiny --plan | xargs -P 2 -I{} sh -c '{}'   independent commands for a scheduler
  zoo train tiny --stack                        a size's seeds as one computation (same bits)
  zoo train tiny --only 2l128/1 --nproc 2       one run on 2 processes (DDP via torchrun)
  torchrun --nproc-per-node 2 -m training tiny --only 2l128/1    the same, launched by hand

With --stack, the seeds of a size (and sizes of the same shape) train together as one stacked
computation, each run stored exactly as if trained alone (same bits; checked on the first step).
By default only the superposition family stacks: on CPU, transformers train as fast one by one.
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
                        help="print one independent command per run (per stack of runs with "
                             "--stack) and exit")
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
    stacking = parser.add_mutually_exclusive_group()
    stacking.add_argument("--stack", dest="stack", action="store_const", const=True, default=None,
                          help="train the seeds of a size together as one stacked computation "
                               "(the bits are those of each run alone)")
    stacking.add_argument("--no-stack", dest="stack", action="store_const", const=False,
                          help="train every run on its own (the default stacks only the "
                               "superposition model, where it was measured faster)")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.set_defaults(handler=_train)


def _train(args) -> int:
    from zoo.config.manifest import load_manifest

    load_manifest(args.manifest)  # a typo in the manifest is reported before torch loads
    from zoo.write_side import reach

    return reach("train_command")(args)
