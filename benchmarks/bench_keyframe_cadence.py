"""Keyframe cadence (issue 35): how far apart keyframes may be for any step to load in a few seconds.

A step that is not stored is replayed from the keyframe before it, so its load time grows with the
distance d to that keyframe: load(d) ~ a + b d. A keyframe costs store space (the weights are a
checkpoint anyway; the keyframe adds the AdamW moments and RNG states). For each model given:
`zoo.load` of non-stored steps at several distances after one keyframe, each into a fresh cache
(so each is a real replay), a least-squares fit of a and b, a keyframe's own bytes (its blobs that
the checkpoint at the same step does not hold), and by cadence K: the worst-case load a + b (K-1)
and the keyframes' bytes per run. The cadence a family should use is the largest K whose
worst case meets the target.

    python benchmarks/bench_keyframe_cadence.py --store S --models induction-gelu2l induction-attn2l
        [--seed 1] [--distances 1 50 150 299] [--target 10] [--threads 2]

Run it on a quiet machine: the load times are what a researcher waits for.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from bench_replay import blob_size, tensor_refs  # noqa: E402
from markdown_table import table  # noqa: E402

CADENCES = (50, 100, 200, 250, 500, 1000)


def own_keyframe_bytes(store, run, step: int) -> int:
    """Bytes of the keyframe's blobs that the checkpoint at the same step does not reference."""
    keyframe = {r["blob"] for r in tensor_refs(run.keyframe_manifest(step))
                if r.get("encoding") != "inline"}  # small tensors live in the manifest itself
    stored = set(run.checkpoint_steps())
    shared = {r["blob"] for r in tensor_refs(run.checkpoint_manifest(step))} if step in stored else set()
    inline = len(run.location.read_bytes(run.manifest_name("keyframes", step)))
    return inline + sum(blob_size(store, sha) for sha in keyframe - shared)


def timed_load(name: str, seed: int, step: int, store) -> float:
    import zoo

    with tempfile.TemporaryDirectory() as cache:
        previous = os.environ.get("ZOO_CACHE")
        os.environ["ZOO_CACHE"] = cache
        try:
            tic = time.perf_counter()
            zoo.load(name, seed=seed, step=step, store=store)
            return time.perf_counter() - tic
        finally:
            if previous is None:
                os.environ.pop("ZOO_CACHE", None)
            else:
                os.environ["ZOO_CACHE"] = previous


def measure(name: str, seed: int, distances: list[int], store) -> dict:
    from zoo.config.names import parse_model_name

    family, size = parse_model_name(name)
    run = _run(store, family, size, seed)
    stored = set(run.checkpoint_steps())
    keyframes = run.keyframe_steps()
    last = int(run.status().get("last_step"))
    start = next((k for k in keyframes if k > 0 and k + max(distances) <= last), None)
    if start is None:
        raise SystemExit(f"{name} seed {seed}: no keyframe with {max(distances)} steps after it")
    points = []
    for d in distances:
        step = start + d
        while step in stored or step in keyframes:  # a stored step would not replay
            step += 1
        points.append((step - start, timed_load(name, seed, step, store)))
    d, t = np.array(points, dtype=float).T
    b, a = np.polyfit(d, t, 1)
    return {"name": name, "keyframe": start, "points": points, "a": a, "b": b,
            "keyframe_mb": own_keyframe_bytes(store, run, start) / 1e6, "steps": last}


def _run(store, family: str, size: str, seed: int):
    from zoo.config.names import RunId

    return store.run(RunId(family, size, seed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--distances", type=int, nargs="+", default=[1, 50, 150, 299])
    parser.add_argument("--target", type=float, default=10.0, help="seconds a load may take")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from zoo.store.store import Store

    torch.set_num_threads(args.threads)
    store = Store.open(args.store)
    results = [measure(name, args.seed, args.distances, store) for name in args.models]
    print(f"zoo.load of a non-stored step, fresh cache each, {args.threads} threads; seed {args.seed}\n")
    print(table([[r["name"], r["keyframe"], ", ".join(f"{d}: {t:.2f}" for d, t in r["points"]),
                  f"{r['a']:.2f} + {r['b'] * 1000:.1f} ms x d", f"{r['keyframe_mb']:.2f}"]
                 for r in results],
                ["model", "keyframe", "distance: seconds", "fit a + b d", "keyframe's own MB"]))
    print(f"\nby cadence K: worst-case load a + b (K - 1) s / keyframes' MB per run "
          f"(target {args.target:g} s)\n")
    rows = []
    for r in results:
        cells = []
        for k in CADENCES:
            worst = r["a"] + r["b"] * (k - 1)
            mb = r["keyframe_mb"] * (r["steps"] // k + 1)
            cells.append(f"{worst:.1f} s / {mb:.0f} MB{' *' if worst <= args.target else ''}")
        best = max((k for k in CADENCES if r["a"] + r["b"] * (k - 1) <= args.target), default=None)
        rows.append([r["name"], *cells, best])
    print(table(rows, ["model", *[f"K={k}" for k in CADENCES], f"largest K <= {args.target:g} s"]))


if __name__ == "__main__":
    main()
