"""Stacked training (issue 34): a family trained stacked and one run at a time, side by side.

For each family: its built-in manifest with every size's steps set to --steps (the same runs, cut
short, so that both ways fit in minutes), trained twice in one invocation into two copies of one
store whose corpora are already prepared: `python -m training M` (stacked, the default) and
`python -m training M --no-stack`, each a fresh process timed end to end (model builds,
checkpoints, keyframes, index and metrics included: what a researcher waits for), its peak
resident memory from the kernel (wait4's ru_maxrss). Then a bit-identity check: every run's last
checkpoint in both stores holds the same tensors. Printed per family: wall times, the ratio
stacked / alone, peak memory, tokens (samples) per second per core.

The outside reference for the rate: a plain PyTorch GPT built as nanoGPT's model.py builds it
(pre-LayerNorm blocks, fused qkv, scaled_dot_product_attention(is_causal=True), GELU MLP of 4x,
tied embeddings; written here, not nanoGPT's code) with nanoGPT's CPU recipe (fp32 AdamW, no
torch.compile, no dropout), at the dimensions of tiny-2l128 and of induction-gelu2l, timed in
this process over the same number of steps and threads.

    python benchmarks/bench_stacked_training.py --steps 100 --threads 2
    python benchmarks/bench_stacked_training.py --families tiny superposition --steps 300

Run it on a quiet machine: one training at a time.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from markdown_table import table  # noqa: E402

FAMILIES = ("tiny", "induction", "grokking", "superposition")
# sizes compared with the nanoGPT-style reference, and their dimensions
REFERENCE_SIZES = {
    "tiny": {"2l128": {"layers": 2, "width": 128, "heads": 4, "vocab": 2048, "context": 64,
                       "batch": 16}},
    "induction": {"gelu2l": {"layers": 2, "width": 128, "heads": 4, "vocab": 512, "context": 64,
                             "batch": 32}},
}


def short_manifest(family: str, steps: int, folder: Path) -> Path:
    """The built-in manifest with every size trained `steps` steps (schedules follow `steps`)."""
    from zoo.config.manifest import resolve_manifest

    doc = yaml.safe_load(resolve_manifest(family).read_text())
    doc["steps"] = steps
    for size in doc["sizes"]:
        size.pop("steps", None)
    path = folder / f"{family}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def prepared_store(manifest: Path, folder: Path) -> Path:
    """A store holding the manifest's corpora (prepared once, outside the timings)."""
    from zoo.config.manifest import load_manifest
    from zoo.store.corpora import ensure_corpus
    from zoo.store.store import Store

    store = Store.open(str(folder))
    for data in {cfg.data for cfg in load_manifest(manifest).runs()}:
        ensure_corpus(store, data, progress=False)
    return folder


def timed_training(manifest: Path, store: Path, threads: int, *, stack: bool) -> tuple[float, int]:
    """(wall seconds, peak resident MB) of one `python -m training` process."""
    command = [sys.executable, "-m", "training", str(manifest), "--store", str(store), "--quiet",
               "--threads", str(threads)] + ([] if stack else ["--no-stack"])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    tic = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - tic
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed: {proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss // 1024


def last_checkpoints(store: Path) -> dict:
    """Every run's last checkpoint's tensors (content hashes), by run folder."""
    found = {}
    for folder in sorted((store / "runs").glob("*/*/seed-*")):
        steps = sorted((folder / "checkpoints").glob("step-*.json"))
        found[str(folder.relative_to(store))] = json.loads(steps[-1].read_text())["tensors"]
    return found


def step_rate(store: Path, family: str, size: str) -> float:
    """Tokens per second of one run's training steps alone (writes excluded): the median step's
    wall time from the metrics, times the runs its stack computed together (1 when alone)."""
    import statistics

    from zoo.config.names import RunId
    from zoo.store.run_metrics import read_run_metrics
    from zoo.store.store import Store

    run = Store.open(str(store)).run(RunId(family, size, 1))
    config = run.read_json("run.json")["config"]
    wall = statistics.median(read_run_metrics(run).column("wall_time").to_pylist())
    extra = run.keyframe_manifest(run.keyframe_steps()[-1]).get("extra", {})
    members = len(extra.get("environment", {}).get("stacked", {}).get("members", [None]))
    return members * config["batch_size"] * config["data"]["seq_len"] / wall


def amount_trained(store: Path) -> tuple[int, int, str]:
    """(runs, tokens or samples trained over all runs, unit), from the runs' own records (a full
    batch is recorded as the number it meant)."""
    runs, total, drawn = 0, 0, False
    for record in sorted((store / "runs").glob("*/*/seed-*/run.json")):
        config = json.loads(record.read_text())["config"]
        drawn = "sparse_features" in json.dumps(config["data"])
        runs += 1
        total += config["steps"] * config["batch_size"] * (1 if drawn else config["data"]["seq_len"])
    return runs, total, "samples" if drawn else "tokens"


def nanogpt_style_rate(*, layers: int, width: int, heads: int, vocab: int, context: int,
                       batch: int, steps: int, threads: int) -> float:
    """Tokens per second of a nanoGPT-shaped plain PyTorch GPT, trained as nanoGPT trains on CPU."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
            self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
            self.fc, self.out = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.qkv(self.ln_1(x)).split(C, dim=2)
            q, k, v = (t.view(B, T, heads, C // heads).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(y.transpose(1, 2).contiguous().view(B, T, C))
            return x + self.out(F.gelu(self.fc(self.ln_2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(vocab, width), nn.Embedding(context, width)
            self.blocks = nn.ModuleList(Block() for _ in range(layers))
            self.ln_f = nn.LayerNorm(width)
            self.head = nn.Linear(width, vocab, bias=False)
            self.wte.weight = self.head.weight  # tied, as nanoGPT

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for block in self.blocks:
                x = block(x)
            logits = self.head(self.ln_f(x))
            return F.cross_entropy(logits.view(-1, vocab), targets.reshape(-1))

    model = GPT()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    data = torch.randint(0, vocab, (steps + 2, batch, context + 1))
    for s in range(steps + 2):
        if s == 2:
            tic = time.perf_counter()  # two warm-up steps
        loss = model(data[s, :, :-1], data[s, :, 1:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return steps * batch * context / (time.perf_counter() - tic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--steps", type=int, default=100, help="steps of every run (default 100)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    cores = min(args.threads, os.cpu_count() or 1)
    rows, step_rates = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families:
            folder = Path(tmp, family)
            folder.mkdir()
            manifest = short_manifest(family, args.steps, folder)
            base = prepared_store(manifest, folder / "base")
            measured = {}
            for stack in (False, True):
                store = folder / ("stacked" if stack else "alone")
                shutil.copytree(base, store)
                measured[stack] = timed_training(manifest, store, args.threads, stack=stack)
                print(f"{family} {'stacked' if stack else 'alone'}: {measured[stack][0]:.1f} s, "
                      f"peak {measured[stack][1]} MB", file=sys.stderr, flush=True)
            same = last_checkpoints(folder / "alone") == last_checkpoints(folder / "stacked")
            for size in REFERENCE_SIZES.get(family, ()):
                step_rates[f"{family}-{size}"] = (step_rate(folder / "alone", family, size),
                                                  step_rate(folder / "stacked", family, size))
            runs, amount, unit = amount_trained(folder / "alone")
            (alone_s, alone_mb), (stacked_s, stacked_mb) = measured[False], measured[True]
            rows.append((family, runs, args.steps, f"{alone_s:.1f}", f"{stacked_s:.1f}",
                         f"{stacked_s / alone_s:.2f}x", f"{alone_mb} / {stacked_mb}",
                         f"{amount / alone_s / cores:,.0f} / {amount / stacked_s / cores:,.0f} {unit}",
                         "yes" if same else "NO"))
            shutil.rmtree(folder)
    print(table(rows, ("family", "runs", "steps", "alone s", "stacked s", "stacked/alone",
                       "peak MB alone / stacked", "per core per s: alone / stacked",
                       "same bits")))
    if step_rates:
        lines = []
        for name, (alone, stacked) in step_rates.items():
            family, size = name.split("-", 1)
            rate = nanogpt_style_rate(**REFERENCE_SIZES[family][size],
                                      steps=max(20, min(args.steps, 100)), threads=args.threads)
            lines.append((name, f"{alone / cores:,.0f}", f"{stacked / cores:,.0f}",
                          f"{rate / cores:,.0f}"))
        print()
        print(table(lines, ("training steps only, tokens/s per core", "zoo alone", "zoo stacked",
                            "nanoGPT-style plain PyTorch, same dimensions")))
    print(f"\n{cores} core(s), {args.threads} thread(s), one process per training")


if __name__ == "__main__":
    main()
