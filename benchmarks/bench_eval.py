"""Evaluation throughput over every checkpoint of a small family: zoo's sweep vs a plain loop.

    python benchmarks/bench_eval.py

Trains a small GPT-NeoX family (2 seeds, dense log-spaced checkpoints) into a temporary store,
then measures held-out loss over all its checkpoints two ways, side by side:
- plain loop: for every (seed, step), AutoModelForCausalLM.from_pretrained(snapshot folder) and
  heldout_loss (snapshot folders are written beforehand and NOT timed; their cost is shown apart);
- zoo: evaluate_family(family, ["loss"]): each checkpoint's blobs decoded once and loaded with
  load_state_dict into one reused model (results written to the store, which the loop does not do).
Both compute the same numbers (checked). Ratio = plain seconds / zoo seconds (> 1: zoo faster).
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

REPEATS = 3


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    try:
        run(folder)
    finally:  # a store, snapshots and a cache: hundreds of MB otherwise left in /tmp
        shutil.rmtree(folder, ignore_errors=True)


def run(folder: Path) -> None:
    os.environ["ZOO_CACHE"] = str(folder / "cache")
    torch.set_num_threads(2)
    from micro_family import write_manifest
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    import zoo
    from training.sweep import train_family
    from zoo.store.corpora import open_corpus
    from zoo.eval.metrics import heldout_loss
    from zoo.eval.results import results_location
    from zoo.eval.evaluate import evaluate_family
    from zoo.eval.heldout import build_heldout
    from zoo.store.store import Store
    from zoo.eval.tables import metrics_table

    hf_logging.disable_progress_bar()  # from_pretrained's per-load bar would flood the table
    store = Store.open(str(folder / "store"))
    sizes = [{"name": "2l64", "layers": 2, "width": 64, "heads": 4, "mlp_width": 256}]
    checkpoints = {"log_spaced_until": 64, "every": 8, "keyframe_every": 32}
    manifest = write_manifest(
        folder, family="bench", sizes=sizes, seeds=[1, 2], steps=64, checkpoints=checkpoints
    )
    t0 = time.perf_counter()
    train_family(manifest, store=store, threads=2, progress=False)
    print(f"trained bench-2l64 x 2 seeds in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    runs = [store.run(r) for r in store.runs()]
    cells = [(r.run_id.seed, s) for r in runs for s in r.checkpoint_steps()]
    corpus = open_corpus(store, runs[0].read_json("run.json")["corpus_fingerprint"])
    heldout = torch.from_numpy(build_heldout(corpus).tokens)

    t0 = time.perf_counter()
    folders = {
        (seed, step): zoo.snapshot("bench-2l64", seed=seed, step=step, store=store)
        for seed, step in cells
    }
    snapshot_seconds = time.perf_counter() - t0

    def plain() -> dict:
        out = {}
        for key, path in folders.items():
            model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
            out[key] = heldout_loss(model, heldout)
        return out

    def ours() -> dict:
        location = results_location(store, "bench")
        for name in location.list():
            location.remove(name)
        evaluate_family("bench", ["loss"], store=store, progress=False)
        rows = metrics_table("bench", store=store).to_pylist()
        return {(r["seed"], r["step"]): r["loss"] for r in rows if r["loss"] is not None}

    timings = {"plain": [], "zoo": []}
    results = {}
    for _ in range(REPEATS):
        for name, fn in (("plain", plain), ("zoo", ours)):
            t0 = time.perf_counter()
            results[name] = fn()
            timings[name].append(time.perf_counter() - t0)
    assert results["plain"].keys() == results["zoo"].keys()
    worst = max(abs(results["plain"][k] - results["zoo"][k]) for k in results["plain"])
    assert worst < 1e-5, worst
    plain_s, zoo_s = min(timings["plain"]), min(timings["zoo"])
    n = len(cells)
    print(
        f"\nheld-out loss ({heldout.shape[0]} x {heldout.shape[1]} tokens) over {n} checkpoints "
        f"(2 seeds x {n // 2} steps), best of {REPEATS}; {platform.processor() or 'cpu'}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"{'method':<48} {'seconds':>8} {'ckpt/s':>8} {'ratio':>6}")
    print(
        f"{'plain loop: from_pretrained(snapshot) + loss':<48} {plain_s:>8.2f} {n / plain_s:>8.1f} {1:>6.2f}"
    )
    print(
        f"{'zoo evaluate_family (decode + load_state_dict)':<48} {zoo_s:>8.2f} {n / zoo_s:>8.1f} "
        f"{plain_s / zoo_s:>6.2f}"
    )
    print(
        f"(not timed above: writing the {n} snapshot folders the plain loop reads took "
        f"{snapshot_seconds:.2f}s; with it the ratio is {(plain_s + snapshot_seconds) / zoo_s:.2f})"
    )
    print(f"max |difference| between the two: {worst:.2e}")


if __name__ == "__main__":
    main()
