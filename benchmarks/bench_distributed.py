"""Tokens/s on 1 and 2 processes (torchrun, gloo), and the cost of world-size-invariant numerics
(micro-batch gradients gathered and summed in a fixed order) as a ratio to plain DDP, side by side
in one run.

    python benchmarks/bench_distributed.py [--steps 40] [--device cpu]

Each configuration trains the same small GPT-NeoX run into its own scratch store through the real
entry point (`torchrun -m training` / `python -m training`). Throughput is global tokens per second
of the training step itself, from the per-step wall times the run records (rank 0), skipping the
first steps (warm-up); process start-up and checkpoint writes are not counted.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MANIFEST = {
    "family": "benchdist",
    "architecture": "gpt-neox",
    "sizes": [{"name": "2l128", "layers": 2, "width": 128, "heads": 4}],
    "seeds": [1],
    "data": {"source": "builtin:pydoc?max_docs=150", "vocab_size": 512, "seq_len": 64},
    "optimizer": {"lr": 1e-3, "clip": 1.0},
    "schedule": {"kind": "constant", "warmup_steps": 0},
    "batch_size": 16,
    "steps": 40,
    "checkpoints": {"log_spaced_until": 0, "every": 100000, "keyframe_every": 100000},
}
MICRO_BATCH = 4
WARMUP_STEPS = 5

# (label, processes, threads per process, micro_batch_size)
CONFIGS = [
    ("1 process, 1 thread", 1, 1, None),
    ("1 process, 2 threads", 1, 2, None),
    ("2 processes x 1 thread, DDP", 2, 1, None),
    ("1 process, invariant", 1, 1, MICRO_BATCH),
    ("2 processes x 1 thread, invariant", 2, 1, MICRO_BATCH),
]


def _train(folder: Path, *, nproc: int, threads: int, micro: int | None, steps: int,
           device: str) -> tuple[float, float]:
    """(tokens/s of the step, seconds of the whole command) for one configuration."""
    from zoo.config.names import RunId
    from zoo.store.run_metrics import read_run_metrics
    from zoo.store.store import Store

    doc = {**MANIFEST, "steps": steps}
    if micro:
        doc["micro_batch_size"] = micro
    manifest = folder / "bench.yaml"
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False))
    store = folder / "store"
    args = ["-m", "training", str(manifest), "--store", str(store), "--quiet",
            "--threads", str(threads), "--device", device]
    if nproc > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc-per-node={nproc}", *args]
    else:
        command = [sys.executable, *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    tic = time.perf_counter()
    done = subprocess.run(command, check=False, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - tic
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    metrics = read_run_metrics(Store.open(str(store)).run(RunId("benchdist", "2l128", 1)))
    walls = metrics.column("wall_time").to_pylist()[WARMUP_STEPS:]
    tokens_per_step = doc["batch_size"] * doc["data"]["seq_len"]
    return tokens_per_step / statistics.median(walls), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=1,
                        help="configurations run interleaved this many times; the best is kept "
                             "(a shared machine's load varies over a minute)")
    args = parser.parse_args()
    import torch

    results: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            for label, nproc, threads, micro in CONFIGS:
                folder = Path(scratch) / f"{round_}-{label.replace(' ', '_').replace(',', '')}"
                folder.mkdir()
                got = _train(folder, nproc=nproc, threads=threads, micro=micro,
                             steps=args.steps, device=args.device)
                print(f"  round {round_ + 1}: {label}: {got[0]:,.0f} tokens/s", file=sys.stderr)
                if label not in results or got[0] > results[label][0]:
                    results[label] = got
    base = results[CONFIGS[0][0]][0]
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"device {args.device}; model gpt-neox 2 layers x 128, batch {MANIFEST['batch_size']} x "
          f"{MANIFEST['data']['seq_len']} tokens, {args.steps} steps (median step after "
          f"{WARMUP_STEPS}, best of {args.rounds} interleaved rounds), invariant micro_batch_size "
          f"{MICRO_BATCH}; load average at the end {os.getloadavg()[0]:.1f}\n")
    print("| configuration | tokens/s | vs 1 process 1 thread | whole command s |")
    print("|---|---:|---:|---:|")
    for label, *_ in CONFIGS:
        rate, seconds = results[label]
        print(f"| {label} | {rate:,.0f} | {rate / base:.2f}x | {seconds:.1f} |")
    ddp = results["2 processes x 1 thread, DDP"][0]
    inv = results["2 processes x 1 thread, invariant"][0]
    one, one_inv = results["1 process, 1 thread"][0], results["1 process, invariant"][0]
    print(f"\ninvariant-mode cost, 2 processes: plain DDP / invariant = {ddp / inv:.2f}x the time "
          f"per step (invariant runs at {inv / ddp:.2f} of DDP's tokens/s)")
    print(f"invariant-mode cost, 1 process: plain / invariant = {one / one_inv:.2f}x the time per step")


if __name__ == "__main__":
    main()
