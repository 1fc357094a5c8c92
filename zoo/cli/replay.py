"""`zoo replay`: re-run a training step and check it bit for bit (exit 0 exact, 1 differs)."""
from __future__ import annotations

import argparse
import json

from zoo.cli.common import SEED_HELP, add_branch_argument, add_store_argument, device_name, open_store, positive_int

EPILOG = """\
examples:
  zoo replay tiny-2l128 --seed 1 --step 150          one step, from the keyframe before it
  zoo replay tiny-2l128 --seed 1 --step 150 --threads 1   what another thread count gives
  zoo replay tiny-2l128 --seed 1 --all               every stored checkpoint and keyframe
  zoo replay tiny-2l128 --seed 1 --step 400 --branch nodup   a step of a branch (zoo branch)

The first line is the verdict: EXACT (every tensor bit-identical to what training stored),
DIFFERS (with the first differing tensor, the largest difference and how the environment
differs), or REPLAYED (the step has no stored weights to compare with). Exit code: 0 exact,
1 differs, 2 bad input.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "replay", help="replay a training step and check it bit for bit", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Restore the keyframe before a step (weights, optimizer, scheduler, RNG, "
                    "thread count), re-run the recorded batches with the training step, compare.",
    )
    parser.add_argument("name", help="model name, e.g. tiny-2l128")
    parser.add_argument("--seed", type=int, required=True, help=SEED_HELP)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--step", type=int, help="the step to replay (>= 1)")
    target.add_argument("--all", action="store_true", help="check every stored step")
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="override the recorded CPU thread count (the result will differ)")
    parser.add_argument("--device", type=device_name, default="cpu",
                        help="cpu (default), cuda or cuda:N; another device than training's "
                             "replays, but reports DIFFERS")
    parser.add_argument("--json", action="store_true", help="print the report(s) as JSON")
    add_branch_argument(parser)
    add_store_argument(parser)
    parser.set_defaults(handler=_replay)


def _replay(args) -> int:
    from dataclasses import asdict

    from zoo.store.catalog import open_run

    store = open_store(args)
    run = open_run(args.name, seed=args.seed, store=store)  # a wrong name fails before the engine
    from zoo.engine.step_replay import check_all  # (and transformers) loads
    from zoo.registry.reachable import replay_step
    if args.all:
        reports = check_all(run, store=store, threads=args.threads, device=args.device,
                            progress=True)
    else:
        reports = [replay_step(run, args.step, store=store, threads=args.threads,
                               device=args.device, progress=True)]
    if args.json:
        print(json.dumps([asdict(r) for r in reports], indent=2, default=str))
    else:
        for report in reports:
            print(report.verdict())
        if not args.all:
            _details(reports[0])
        else:
            n_exact = sum(r.exact is True for r in reports)
            print(f"{n_exact}/{len(reports)} stored steps replayed bit-exactly")
    return 0 if all(r.exact is not False for r in reports) else 1


def _details(report) -> None:
    print(f"  keyframe:     step {report.from_keyframe}")
    if report.compared:
        print(f"  tensors:      {report.n_tensors} compared, {report.n_different} differ")
    else:
        print(f"  tensors:      {report.n_tensors} replayed (none stored at this step to compare)")
    print(f"  environment then: {_env(report.environment_then)}")
    print(f"  environment now:  {_env(report.environment_now)}")
    print(f"  time:         {report.seconds:.2f}s")


def _env(record: dict) -> str:
    keys = ("torch", "device", "cpu_capability", "threads", "deterministic", "world_size")
    return ", ".join(f"{k}={record.get(k)}" for k in keys)
