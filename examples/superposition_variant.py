"""Does the superposition pattern hold when n, m, sparsity or importance change? A variant family.

    python examples/superposition_variant.py --store S            # n=12, m=3, importance 0.8
    python examples/superposition_variant.py --store S --n 8 --m 2 --importance 1 --sparsities 0 0.9

Writes a manifest like manifests/superposition.yaml with other numbers (one size per sparsity),
trains it with `zoo.train`, measures every stored step with `zoo eval --metric superposition`,
and prints, per sparsity, the features represented at the last step in every seed with their
interval over seeds, the dimensions per feature and the interference. The pattern of the paper:
at sparsity 0 about m features (at most m + 1 in every seed, no interference); at the highest
sparsity more than m, with interference. The exit status says whether it held (0) or not (1).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml


def manifest(args) -> dict:
    sizes = [{"name": f"n{args.n}m{args.m}s{s:g}", "width": args.m,
              "source": f"builtin:sparse_features?n={args.n}&sparsity={s:g}&importance={args.importance:g}"}
             for s in args.sparsities]
    return {
        "family": args.family, "architecture": "superposition", "sizes": sizes,
        "seeds": list(range(1, args.seeds + 1)),
        "data": {"source": sizes[0]["source"]},
        "optimizer": {"lr": 1e-3, "betas": [0.9, 0.999], "weight_decay": 0.0, "clip": 0},
        "schedule": {"kind": "constant", "warmup_steps": 0},
        "batch_size": 1024, "steps": args.steps,
        "checkpoints": {"log_spaced_until": 64, "every": 100, "keyframe_every": 500},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--family", default="superposition-variant")
    parser.add_argument("--n", type=int, default=12, help="features")
    parser.add_argument("--m", type=int, default=3, help="hidden dimensions")
    parser.add_argument("--importance", type=float, default=0.8, help="feature i weighs importance**i")
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.0, 0.9, 0.99])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5000)
    args = parser.parse_args()

    import zoo
    from zoo.eval.evaluate import evaluate_family
    from zoo.stats import seed_interval

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{args.family}.yaml"
        path.write_text(yaml.safe_dump(manifest(args), sort_keys=False))
        zoo.train(str(path), store=args.store, progress=False)
    evaluate_family(args.family, ["superposition"], store=args.store, progress=False)
    table = zoo.metrics(args.family, store=args.store)
    last = max(table.column("step").to_pylist())
    rows = [r for r in table.to_pylist() if r["step"] == last]
    print(f"{args.family}: n={args.n} features in m={args.m} dimensions, importance "
          f"{args.importance:g}^i, {args.seeds} seeds, {args.steps} steps "
          f"({time.perf_counter() - started:.0f} s to train and measure)")
    print("| sparsity | represented per seed | mean [95% t] | dims/feature | interference |")
    print("|---|---|---|---|---|")
    held = True
    for k, sparsity in enumerate(args.sparsities):
        size = f"n{args.n}m{args.m}s{sparsity:g}"
        mine = sorted((r for r in rows if r["size"] == size), key=lambda r: r["seed"])
        counts = [r["superposition.represented"] for r in mine]
        interval = seed_interval(counts) if len(counts) > 1 else None
        span = f"{interval.mean:.2f} [{interval.low:.2f}, {interval.high:.2f}]" if interval else f"{counts[0]:g}"
        dims = sum(r["superposition.dims_per_feature"] for r in mine) / len(mine)
        interference = sum(r["superposition.interference_mean"] for r in mine) / len(mine)
        print(f"| {sparsity:g} | {', '.join(f'{c:g}' for c in counts)} | {span} | {dims:.3f} | "
              f"{interference:.3g} |")
        if sparsity == 0 and max(counts) > args.m + 1:
            held = False
        if k == len(args.sparsities) - 1 and sparsity > 0 and min(counts) <= args.m:
            held = False
    print(f"pattern (at sparsity 0 at most m + 1 = {args.m + 1} in every seed; at the highest "
          f"sparsity more than m = {args.m} in every seed): {'holds' if held else 'DOES NOT HOLD'}")
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
