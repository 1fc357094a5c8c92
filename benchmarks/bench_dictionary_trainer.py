"""Dictionary trainer benchmark: zoo's deterministic trainer against SAELens' own, on the same
activations at matched settings (variance explained and L0 within 5%: the issue's check), and
the time a dictionary takes (target: width 1,024 on a 128-wide residual stream in <= 2 minutes).

Activations: a site of a stored run at a step, its 64 training steps up to that step, exactly as
trained (zoo.dictionaries); 90% train both trainers, the last 10% measure both. SAELens runs in
.venv-sae (benchmarks/sae_lens_side.py: how its settings are matched).

    python benchmarks/bench_dictionary_trainer.py --store S --model induction-attn2l --seed 1 \\
        --step 3000 --site blocks.1.hook_resid_post
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--model", default="induction-attn2l")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--step", type=int, default=3000)
    parser.add_argument("--site", default="blocks.1.hook_resid_post")
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--l1", type=float, default=3.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=1024)
    args = parser.parse_args()

    from safetensors.torch import save_file

    from zoo.dictionaries.activations import DataWindow
    from zoo.dictionaries.dictionary_runs import DEFAULT_WINDOW, gather_activations, model_at
    from zoo.dictionaries.quality import reconstruction_quality
    from zoo.models.sites import resolve_site
    from zoo.dictionaries.sparse_autoencoder import DictionaryConfig, fit
    from zoo.store.catalog import open_run

    run = open_run(args.model, seed=args.seed, store=args.store)
    model, _ = model_at(run, args.step)
    site = resolve_site(args.site, model)
    window = DataWindow.parse(None, step=args.step, last_step=int(run.status()["last_step"]),
                              default_steps=DEFAULT_WINDOW)
    started = time.perf_counter()
    values = gather_activations(run, model, site, window).values
    collected = time.perf_counter() - started
    cut = int(0.9 * len(values))
    train, test = values[:cut].contiguous(), values[cut:].contiguous()
    print(f"{args.model} seed {args.seed} step {args.step} {site.name}: {len(values):,} rows of "
          f"{site.width} (training steps {window.first}..{window.last}), collected in {collected:.1f} s")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        acts = Path(tmp) / "acts.safetensors"
        save_file({"train": train, "test": test}, acts)
        for kind in ("topk", "relu"):
            config = DictionaryConfig(kind=kind, width=args.width, k=args.k, l1=args.l1 / site.width,
                                      lr=args.lr, steps=args.steps, batch=args.batch, seed=0)
            tic = time.perf_counter()
            sae, _ = fit(train, config)
            ours_seconds = time.perf_counter() - tic
            ours = reconstruction_quality(sae, test)
            out = Path(tmp) / f"{kind}.json"
            done = subprocess.run([str(ROOT / ".venv-sae" / "bin" / "python"),
                                   str(ROOT / "benchmarks" / "sae_lens_side.py"), str(acts), str(out),
                                   kind, str(args.width), str(args.k), str(config.l1), str(args.lr),
                                   str(args.steps), str(args.batch)], capture_output=True, text=True)
            if done.returncode:
                print(done.stderr[-2000:])
                return 1
            theirs = json.loads(out.read_text())
            rows.append((kind, ours, ours_seconds, theirs))
    print(f"\nwidth {args.width}, {args.steps} steps of {args.batch} rows, lr {args.lr}; topk k {args.k}; "
          f"relu L1 {args.l1}/{site.width}; test rows {len(test):,}")
    print("| kind | VE zoo | VE SAELens | ratio | L0 zoo | L0 SAELens | ratio | s zoo | s SAELens |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    within = True
    for kind, ours, seconds, theirs in rows:
        ve, l0 = ours["variance_explained"] / theirs["variance_explained"], ours["l0"] / max(theirs["l0"], 1e-9)
        within &= abs(ve - 1) <= 0.05 and abs(l0 - 1) <= 0.05
        print(f"| {kind} | {ours['variance_explained']:.4f} | {theirs['variance_explained']:.4f} | "
              f"{ve:.3f} | {ours['l0']:.2f} | {theirs['l0']:.2f} | {l0:.3f} | {seconds:.1f} | "
              f"{theirs['seconds']:.1f} |")
    print(f"within 5% on VE and L0: {within}")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
