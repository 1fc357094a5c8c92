"""Load benchmark: `zoo.load` from a local store vs `from_pretrained` on a plain safetensors folder.

Trains a small GPT-NeoX family (two sizes, a few steps; the weights' size is what matters here) into
a temporary store, saves the same model with `save_pretrained` + the tokenizer as the bare baseline,
then measures, interleaved, medians over REPEAT rounds (cold first; cached and bare after it in
alternating order):

- cold:   `zoo.load` with an empty cache (ZOO_CACHE -> a fresh folder): decode + verify the blobs
          (in parallel threads), write the snapshot folder (safetensors' save_file, config,
          tokenizer files), then `from_pretrained` on it, as anyone would;
- cached: `zoo.load` again (the snapshot folder is reused);
- bare:   `AutoModelForCausalLM.from_pretrained(folder)` + `AutoTokenizer.from_pretrained(folder)`.

Both sides return a model and a tokenizer. No target: the ratios are recorded as they are (a
researcher does not notice tens of milliseconds on a load; benchmarks/RESULTS.md).

    python benchmarks/bench_load.py
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

REPEAT = 9
SIZES = [
    {"name": "2l128", "layers": 2, "width": 128, "heads": 4, "mlp_width": 512},
    {"name": "4l256", "layers": 4, "width": 256, "heads": 4, "mlp_width": 1024},
]


def train(folder: Path):
    from micro_family import write_manifest

    from training.sweep import train_family
    from zoo.store.store import Store

    store = Store.open(str(folder / "store"))
    manifest = write_manifest(
        folder, "bench.yaml", family="bench", sizes=SIZES, seeds=[1], steps=8,
        data={"source": "builtin:pydoc?max_docs=300", "vocab_size": 4096, "seq_len": 64},
        checkpoints={"log_spaced_until": 1, "every": 8, "keyframe_every": 8},
    )
    print("training the benchmark family (2 sizes x 8 steps)...", file=sys.stderr)
    train_family(manifest, store=store, threads=2, progress=False)
    return store


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bench_size(store, name: str, step: int, scratch: Path) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import zoo

    os.environ["ZOO_CACHE"] = tempfile.mkdtemp(dir=scratch)
    model, tokenizer = zoo.load(name, seed=1, step=step, store=store)
    plain = scratch / f"plain-{name}"
    model.save_pretrained(plain)
    tokenizer.save_pretrained(plain)
    n_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())

    def bare():
        AutoModelForCausalLM.from_pretrained(plain)
        AutoTokenizer.from_pretrained(plain)

    def ours():
        zoo.load(name, seed=1, step=step, store=store)

    times = {"cold": [], "cached": [], "bare": []}
    bare()  # warm imports and the page cache for both sides
    for round_ in range(REPEAT):
        os.environ["ZOO_CACHE"] = tempfile.mkdtemp(dir=scratch)
        times["cold"].append(timed(ours))
        # Whichever load follows the cold one runs while the kernel still settles the new
        # snapshot file's 21 MB of dirty pages; alternate so that bare and cached share that.
        for which in (("cached", "bare") if round_ % 2 == 0 else ("bare", "cached")):
            times[which].append(timed(ours if which == "cached" else bare))
    medians = {k: statistics.median(v) for k, v in times.items()}
    return {"name": name, "mb": n_bytes / 1e6, **medians, **cold_parts(store, name, step)}


def cold_parts(store, name: str, step: int) -> dict:
    """The part of a cold load that only the store does: the verified read of every blob."""
    from zoo.store.catalog import open_run

    run = open_run(name, seed=1, store=store)
    reads = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        run.read_checkpoint(step)
        reads.append(time.perf_counter() - started)
    return {"read": statistics.median(reads)}


def main() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    print(f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
          file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        os.environ["ZOO_CACHE"] = str(scratch / "train-cache")
        store = train(scratch)
        rows = [bench_size(store, f"bench-{s['name']}", 8, scratch) for s in SIZES]
    print(f"\nzoo.load vs from_pretrained (model + tokenizer), median of {REPEAT}, ms; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("| model        | fp32 MB | bare  | cold  | cached | cold/bare | cached/bare "
          "| verified read of the blobs |")
    print("|--------------|---------|-------|-------|--------|-----------|-------------"
          "|----------------------------|")
    for r in rows:
        print(f"| {r['name']:<12} | {r['mb']:7.1f} | {r['bare']*1e3:5.1f} | {r['cold']*1e3:5.1f} "
              f"| {r['cached']*1e3:6.1f} | {r['cold']/r['bare']:9.2f} | "
              f"{r['cached']/r['bare']:11.2f} | {r['read']*1e3:26.1f} |")


if __name__ == "__main__":
    main()
