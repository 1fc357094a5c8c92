"""`zoo batch` and `zoo steps-of`: the data index by model name (the store finds corpus and index)."""
from __future__ import annotations

import argparse

from zoo.cli.common import SEED_HELP, add_branch_argument, add_store_argument, open_store

BATCH_EPILOG = """\
examples:
  zoo batch tiny-2l128 --seed 1 --step 257            every sample of the step's batch as text
  zoo batch tiny-2l128 --seed 1 --step 257 --ids      only the sample ids, one per line
  zoo batch tiny-2l128 --seed 1 --step 257 --branch nodup   what a branch trained on instead

Step N consumes global batch N-1 of the run's data order; step 0 (the initial weights) has none.
"""

STEPS_OF_EPILOG = """\
example:
  zoo steps-of tiny-2l128 --seed 1 --sample 1234      the steps (and positions) that held it
"""


def register(subparsers) -> None:
    batch = subparsers.add_parser(
        "batch", help="print the batch a training step consumed", epilog=BATCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Print the exact batch of a step, from the run's recorded data index.")
    batch.add_argument("name", help="model name, e.g. tiny-2l128")
    batch.add_argument("--seed", type=int, required=True, help=SEED_HELP)
    batch.add_argument("--step", type=int, required=True)
    batch.add_argument("--ids", action="store_true", help="print sample ids only")
    add_branch_argument(batch)
    add_store_argument(batch)
    batch.set_defaults(handler=_batch)

    steps_of = subparsers.add_parser(
        "steps-of", help="list the steps whose batch held a sample", epilog=STEPS_OF_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="List every (step, position) whose batch held the sample.")
    steps_of.add_argument("name", help="model name, e.g. tiny-2l128")
    steps_of.add_argument("--seed", type=int, required=True, help=SEED_HELP)
    steps_of.add_argument("--sample", type=int, required=True)
    add_branch_argument(steps_of)
    add_store_argument(steps_of)
    steps_of.set_defaults(handler=_steps_of)


def _batch(args) -> int:
    from zoo.registry.batches import batch_values, run_data
    from zoo.store.catalog import open_run
    from zoo.store.lineage import batch_owner

    run = open_run(args.name, seed=args.seed, store=open_store(args))  # NAME@LABEL: a branch
    corpus, index = run_data(batch_owner(run, args.step))  # a branch's early steps: its parent's
    ids = index.batch_ids(args.step)
    drawn = getattr(corpus, "drawn", False)  # feature vectors (the superposition family)
    values = batch_values(corpus, index, ids) if drawn and not args.ids else None
    for position, sample in enumerate(ids.tolist()):
        if args.ids:
            print(sample)
            continue
        if drawn:
            shown = " ".join("0" if v == 0 else f"{v:.3f}" for v in values[position].tolist())
            print(f"position {position}  sample {sample}:  {shown}")
            continue
        document, offset = corpus.provenance(sample)
        text = corpus.decode(corpus.samples([sample])[0].tolist())
        print(f"--- position {position}  sample {sample}  (document {document}, token {offset})")
        print(text)
    return 0


def _steps_of(args) -> int:
    from zoo.registry.batches import placements_of

    hits = placements_of(args.name, seed=args.seed, sample=args.sample, store=open_store(args))
    print(f"sample {args.sample} appeared in {len(hits)} batch(es) of {args.name} seed {args.seed}")
    for step, position in hits:
        print(f"  step {step}  position {position}")
    return 0
