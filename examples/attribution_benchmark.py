"""Training-data attribution checked against real retraining, over seeds: ours and a library's.

    zoo train induction --only attn2l --store S        # the family (about 3 min per seed)
    python examples/attribution_benchmark.py --store S --seeds 1 2 3

For every seed of induction-attn2l, on the window (1100, 1200] (the steepest part of the phase
change in all five seeds: the second-copy loss drop goes from ~0.5 to ~1.5-2.7 nats) and the
target `repetition` (the loss on the second copy of [r, r], which induction heads lower):

1. `zoo.attribute`: every sample of the window scored along the exact trajectory, TracIn and the
   AdamW-preconditioned variant (stored; read back when run again).
2. TRAK from dattri (`zoo attribute --trak`): random projections of per-sample gradients at the
   window's first and last checkpoints, the target's sequences as its test set.
3. Removal: for each method, branches that retrain the window without its top-k, k random (the
   same k for every method; --random-draws sets of them, for the spread any k samples make) and
   bottom-k samples, masked (each step trains on its own batch
   without them); the target loss at step 1200, branch - parent.
4. LDS (Park et al. 2023): M random halves of the window masked by branches; Spearman between
   each method's additive prediction and the actual rise; mean over seeds with a t interval.
5. The induction question: what each method's top-k samples have in common, against its
   bottom-k and the window: the share of repeated-token positions (a token that continues an earlier occurrence
   of its predecessor: where an induction head lowers loss) and the longest repeated span.

Every branch is exact (the parent's state at 1100, the same batches less the masked samples)
and stored, so running the script again reads them back. Prints one table; --out writes JSON.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from zoo.attribution.attribution import attribute
from zoo.attribution.check import datamodeling_score, removal_check
from zoo.attribution.library_scores import trak_scores
from zoo.stats import seed_interval
from zoo.store.catalog import open_run, open_store
from zoo.store.corpora import open_corpus


def repeat_profile(tokens: np.ndarray) -> tuple[float, int]:
    """(share of positions whose token continues an earlier occurrence of its predecessor, the
    longest span of tokens that occurs twice)."""
    continues, seen = 0, {}
    for i in range(1, len(tokens)):
        if tokens[i] in seen.get(tokens[i - 1], ()):
            continues += 1
        seen.setdefault(tokens[i - 1], set()).add(tokens[i])
    longest = 0
    for shift in range(1, len(tokens)):
        same = np.concatenate([[False], tokens[:-shift] == tokens[shift:], [False]])
        edges = np.flatnonzero(np.diff(same.astype(np.int8)))
        if len(edges):
            longest = max(longest, int((edges[1::2] - edges[::2]).max()))
    return continues / (len(tokens) - 1), longest


def profile(corpus, ids) -> dict:
    rows = [repeat_profile(t) for t in corpus.samples(sorted(ids))]
    return {"continues": float(np.mean([r[0] for r in rows])),
            "longest": float(np.mean([r[1] for r in rows]))}


def interval(values) -> str:
    if len(values) < 2:
        return f"{values[0]:+.3f} (one seed: no interval)"
    s = seed_interval(values)
    return f"{s.mean:+.3f} [{s.low:+.3f}, {s.high:+.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--model", default="induction-attn2l")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--target", default="repetition")
    parser.add_argument("--from-step", type=int, default=1100)
    parser.add_argument("--until-step", type=int, default=1200)
    parser.add_argument("--k", type=int, default=100, help="samples dropped per removal arm")
    parser.add_argument("--lds", type=int, default=20, metavar="M", help="random halves (20)")
    parser.add_argument("--random-draws", type=int, default=3, metavar="R",
                        help="random k-sets per seed, for the spread a removal of any k samples "
                             "makes (3)")
    parser.add_argument("--out", default=None, metavar="JSON")
    args = parser.parse_args()
    store = open_store(args.store)
    per_seed = {}
    for seed in args.seeds:
        started = time.perf_counter()
        result = attribute(args.model, seed=seed, target=args.target, from_step=args.from_step,
                           until_step=args.until_step, store=store, progress=False)
        trak, trak_seconds = trak_scores(result, store=store)
        removals = {method: removal_check(result, k=args.k, method=method, store=store,
                                          scores=trak if method == "trak" else None)
                    for method in ("adam", "tracin", "trak")}
        draws = [removals["adam"].rise["random"]] + [
            removal_check(result, k=args.k, store=store, rng_seed=r).rise["random"]
            for r in range(1, args.random_draws)]
        lds = datamodeling_score(result, m=args.lds, store=store, others={"trak": trak})
        run = open_run(args.model, seed=seed, store=store)
        corpus = open_corpus(store, run.read_json("run.json")["corpus_fingerprint"])
        ranked = result.ranked("adam")
        ranks = {"adam": ranked, "tracin": result.ranked("tracin"),
                 "trak": sorted(trak, key=lambda i: (-trak[i], i))}
        per_seed[seed] = {
            "seconds": {"adam": result.seconds, "tracin": result.seconds, "trak": trak_seconds,
                        "removal": sum(r.seconds for r in removals.values()),
                        "lds": lds.seconds, "all": time.perf_counter() - started},
            "removal": {m: {"rise": r.rise, "ordered": r.ordered, "parent": r.parent_loss}
                        for m, r in removals.items()},
            "lds": lds.spearman, "samples": len(ranked), "random_draws": draws,
            "profile": {**{f"{m} {end}": profile(corpus, r[:args.k] if end == "top" else r[-args.k:])
                           for m, r in ranks.items() for end in ("top", "bottom")},
                        "window": profile(corpus, ranked)},
        }
        print(f"seed {seed}: " + "; ".join(
            f"{m} top {r.rise['top']:+.4f} random {r.rise['random']:+.4f} bottom "
            f"{r.rise['bottom']:+.4f}{' ordered' if r.ordered else ' NOT ordered'}"
            for m, r in removals.items())
            + f"; random k-sets {', '.join(f'{d:+.4f}' for d in draws)}"
            + "; LDS " + ", ".join(f"{m} {v:+.3f}" for m, v in lds.spearman.items())
            + f" ({per_seed[seed]['seconds']['all']:.0f} s)", flush=True)
    seeds = list(per_seed)
    print(f"\n{args.model}, seeds {', '.join(map(str, seeds))}, window ({args.from_step}, "
          f"{args.until_step}], target {args.target}, k = {args.k}, LDS over M = {args.lds} "
          f"halves; mean over seeds with a 95 % t interval\n")
    print("| method | LDS (Spearman) | top-k rise | random-k rise | bottom-k rise | ordered | "
          "scoring time per seed |")
    print("|---|---|---|---|---|---|---|")
    for method in ("adam", "tracin", "trak"):
        rises = {arm: [per_seed[s]["removal"][method]["rise"][arm] for s in seeds]
                 for arm in ("top", "random", "bottom")}
        ordered = sum(per_seed[s]["removal"][method]["ordered"] for s in seeds)
        seconds = np.mean([per_seed[s]["seconds"][method] for s in seeds])
        print(f"| {method} | {interval([per_seed[s]['lds'][method] for s in seeds])} | "
              f"{interval(rises['top'])} | {interval(rises['random'])} | "
              f"{interval(rises['bottom'])} | {ordered}/{len(seeds)} | {seconds:.0f} s |")
    spread = [max(per_seed[s]["random_draws"]) - min(per_seed[s]["random_draws"]) for s in seeds]
    print(f"\nRemoving k random samples, {args.random_draws} draws per seed: the draws span "
          f"{np.mean(spread):.4f} nats on average (per seed: "
          f"{', '.join(f'{x:.4f}' for x in spread)}); a method's top-bottom gap beyond that is "
          f"more than any k samples do.")
    print("\nWhat each method's top-k and bottom-k samples have in common, mean over seeds:\n")
    print("| samples | repeated-token positions | longest repeated span (tokens) |")
    print("|---|---|---|")
    for group in [f"{m} {end}" for m in ("adam", "tracin", "trak") for end in ("top", "bottom")] + ["window"]:
        print(f"| {group} | {np.mean([per_seed[s]['profile'][group]['continues'] for s in seeds]):.3f}"
              f" | {np.mean([per_seed[s]['profile'][group]['longest'] for s in seeds]):.1f} |")
    removal_s = np.mean([per_seed[s]["seconds"]["removal"] for s in seeds])
    lds_s = np.mean([per_seed[s]["seconds"]["lds"] for s in seeds])
    print(f"\nBranch checks per seed: removal (3 methods) {removal_s:.0f} s, LDS {lds_s:.0f} s.")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "per_seed": per_seed}, f, indent=2)


if __name__ == "__main__":
    main()
