"""A TransformerLens sweep over 50 checkpoints: zoo.transformer_lens_sweep vs the hand-written loop
(zoo.snapshot + TransformerBridge.boot_transformers per checkpoint), side by side in one process.

    python benchmarks/bench_tl_sweep.py --store STORE --model induction-attn2l [--n 50]

Both read the same (seed, step) pairs (seeds in order, each seed's stored steps) from snapshot
folders that are already cached (a first pass builds them, untimed), run one forward pass of
8 x 64 tokens per checkpoint and check that the two agree. Rounds alternate to share the noise.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zoo  # noqa: E402
from zoo.interp.transformer_lens_loading import transformer_lens, transformer_lens_sweep  # noqa: E402


def pairs(model: str, store: str, n: int) -> list[tuple[int, int]]:
    [info] = [m for m in zoo.list_models(store=store) if m.name == model]
    chosen = [(seed, step) for seed in info.seeds for step in info.steps[seed]]
    if len(chosen) < n:
        raise SystemExit(f"{model} has {len(chosen)} stored checkpoints over its seeds; --n {n} needs more")
    return chosen[:n]


def ours(model, store, chosen, tokens) -> list[float]:
    out, seeds = [], sorted({s for s, _ in chosen})
    for seed in seeds:
        steps = [t for s, t in chosen if s == seed]
        for _, _, bridge in transformer_lens_sweep(model, seeds=[seed], steps=steps, store=store):
            with torch.no_grad():
                out.append(float(bridge(tokens).sum()))
    return out


def hand_written(model, store, chosen, tokens) -> list[float]:
    bridge_class = transformer_lens()
    out = []
    for seed, step in chosen:
        path = zoo.snapshot(model, seed=seed, step=step, store=store)
        bridge = bridge_class.boot_transformers(str(path), trust_remote_code=True)
        with torch.no_grad():
            out.append(float(bridge(tokens).sum()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--model", default="induction-attn2l")
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    chosen = pairs(args.model, args.store, args.n)
    for seed, step in chosen:  # build the snapshot folders once, untimed
        zoo.snapshot(args.model, seed=seed, step=step, store=args.store)
    tokens = torch.randint(0, 256, (8, 64), generator=torch.Generator().manual_seed(0))
    times = {"sweep": [], "snapshot + boot_transformers": []}
    results = {}
    for _ in range(args.rounds):
        for label, fn in (("sweep", ours), ("snapshot + boot_transformers", hand_written)):
            start = time.perf_counter()
            results[label] = fn(args.model, args.store, chosen, tokens)
            times[label].append(time.perf_counter() - start)
    a, b = results["sweep"], results["snapshot + boot_transformers"]
    assert all(abs(x - y) <= 1e-3 * max(1.0, abs(y)) for x, y in zip(a, b)), "the two loops disagree"
    base = statistics.median(times["snapshot + boot_transformers"])
    print(f"{args.n} checkpoints of {args.model}, one forward of 8 x 64 tokens each, "
          f"median of {args.rounds} alternating rounds, torch threads 2")
    print("| loop | total (s) | per checkpoint (ms) | vs hand-written |")
    print("|---|---|---|---|")
    for label, values in times.items():
        median = statistics.median(values)
        print(f"| {label} | {median:.2f} | {1000 * median / args.n:.0f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()
