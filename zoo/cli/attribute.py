"""`zoo attribute`: which training samples of a window of steps moved a target, and the check."""
from __future__ import annotations

import argparse

from zoo.cli.common import SEED_HELP, add_store_argument, open_store, positive_int

EPILOG = """\
examples:
  zoo attribute induction-attn2l --seed 1 --target repetition --from-step 1100 --until-step 1200
      every sample of steps 1101..1200 scored on the induction probe's second-copy loss (TracIn
      along the exact trajectory, and the AdamW-preconditioned variant); the top and bottom 10
  zoo attribute tiny-2l128 --seed 1 --target heldout --from-step 200 --until-step 300 --top 20
  zoo attribute induction-attn2l --seed 1 --target repetition --from-step 1100 \\
      --until-step 1200 --check-k 100        then retrain the window without the top / 100 random
                                            / bottom 100 samples (branches) and measure
  zoo attribute induction-attn2l --seed 1 --target repetition --from-step 1100 \\
      --until-step 1200 --lds 20             linear datamodeling score over 20 random halves
  zoo attribute induction-attn2l --seed 1 --target repetition --from-step 1100 \
      --until-step 1200 --check-k 100 --trak  TRAK (dattri) on the same window, checked beside

Targets: heldout (the family's held-out text; --heldout SOURCE to choose), samples:ID,ID,...
(training samples by id), repetition (loss on the second copy of [r, r], as the repetition
metric). A score > 0 says the sample lowered the target loss: dropping it should raise it.
Scores are stored in the store (evals/FAMILY/attributions/) and read back by the same command.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "attribute", help="score the training samples of a window of steps on a target",
        description="Training-data attribution along the exact trajectory (every step of the "
                    "window replayed), optionally checked by retraining the window without the "
                    "samples it names.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="model name, e.g. induction-attn2l (NAME@LABEL: a branch)")
    parser.add_argument("--seed", type=int, required=True, help=SEED_HELP)
    parser.add_argument("--target", required=True, help="heldout | samples:ID,ID,... | repetition")
    parser.add_argument("--from-step", type=int, required=True, metavar="A",
                        help="the window starts after this step")
    parser.add_argument("--until-step", type=int, required=True, metavar="B",
                        help="the window's last step")
    parser.add_argument("--method", choices=("adam", "tracin"), default="adam",
                        help="the scores shown and checked (adam: AdamW-preconditioned; default)")
    parser.add_argument("--top", type=positive_int, default=10, help="samples shown each end (10)")
    parser.add_argument("--heldout", default=None, metavar="SOURCE",
                        help="with --target heldout: the held-out documents")
    parser.add_argument("--check-k", type=positive_int, default=None, metavar="K",
                        help="retrain the window without the top / K random / bottom K samples")
    parser.add_argument("--lds", type=positive_int, default=None, metavar="M",
                        help="linear datamodeling score over M random halves (M branches)")
    parser.add_argument("--trak", action="store_true",
                        help="also score with TRAK (dattri, the `attribution` extra) from the "
                             "window's first and last checkpoints, and check it beside ours")
    parser.add_argument("--recompute", action="store_true", help="score again even if stored")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_store_argument(parser)
    parser.set_defaults(handler=_attribute)


def _attribute(args) -> int:
    from zoo.attribution.attribution import attribute
    from zoo.store.catalog import open_run
    from zoo.store.corpora import open_corpus

    store = open_store(args)
    result = attribute(args.name, seed=args.seed, target=args.target, from_step=args.from_step,
                       until_step=args.until_step, store=store, heldout=args.heldout,
                       recompute=args.recompute, progress=not args.quiet)
    run = open_run(args.name, seed=args.seed, store=store)
    corpus = open_corpus(store, run.read_json("run.json")["corpus_fingerprint"])
    print(result.format(k=args.top, method=args.method,
                        texts=lambda i: corpus.decode(corpus.samples([i])[0].tolist())))
    print(f"stored: {store.url}/{result.path}.parquet")
    trak = None
    if args.trak:
        from zoo.attribution.library_scores import trak_scores

        trak, seconds = trak_scores(result, store=store)
        print(f"TRAK (dattri; checkpoints {result.from_step} and {result.until_step}): "
              f"{len(trak)} samples scored in {seconds:.0f} s")
    if args.check_k:
        from zoo.attribution.check import removal_check

        checked = [(args.method, None)] + ([("trak", trak)] if trak else [])
        for method, scores in checked:
            removal = removal_check(result, k=args.check_k, method=method, store=store,
                                    progress=not args.quiet, scores=scores)
            print(f"\nretrained steps ({result.from_step}, {result.until_step}] without K = "
                  f"{args.check_k} samples ({method}); target loss at step {result.until_step}: "
                  f"parent {removal.parent_loss:.4f}")
            for arm, rise in removal.rise.items():
                print(f"  drop {arm:<6} {rise:+.4f}")
            print(("ordered as a working attribution orders them (top > random > bottom)"
                   if removal.ordered else "NOT ordered top > random > bottom")
                  + f"; {removal.seconds:.0f} s")
    if args.lds:
        from zoo.attribution.check import datamodeling_score

        lds = datamodeling_score(result, m=args.lds, store=store, progress=not args.quiet,
                                 others={"trak": trak} if trak else None)
        print(f"\nlinear datamodeling score over {lds.m} random halves of the window's samples "
              f"({lds.seconds:.0f} s): " + ", ".join(f"{m} {rho:+.3f}" for m, rho in lds.spearman.items()))
    return 0
