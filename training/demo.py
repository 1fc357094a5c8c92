"""The main job on the built-in default: train the `tiny` family, load a model, replay a step,
print a summary. `bash scripts/dev.sh demo` runs it on a fresh machine; re-running it skips the
runs that are finished (the store is kept in ./zoo-store, or $ZOO_STORE, or --store).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

from zoo_common.errors import ZooError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.demo", description=__doc__)
    parser.add_argument("--store", default=None, help="default: $ZOO_STORE, else ./zoo-store")
    parser.add_argument("--family", default="tiny", help="built-in family or manifest path")
    args = parser.parse_args(argv)
    try:
        return _demo(args.store, args.family)
    except ZooError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2


def _demo(store_url: str | None, family_name: str) -> int:
    import torch

    import zoo
    from training.sweep import train_family
    from zoo.config.manifest import load_manifest
    from zoo.config.names import RunId
    from zoo.registry.batches import batch_ids
    from zoo.store.store import Store

    store = Store.open(store_url)
    family = load_manifest(family_name)
    print(f"== 1. train family {family.family!r} into {store.url}")
    tic = time.perf_counter()
    outcomes = train_family(family_name, store=store)
    print(f"   {len(outcomes)} runs in {time.perf_counter() - tic:.0f}s")

    cfg = family.runs()[-1]  # the largest size: its text is the most readable
    name, seed = cfg.model_name, cfg.seed.seed
    stored = zoo.steps(name, seed=seed, store=store)
    final = stored[-1]
    print(f"\n== 2. load {name} seed {seed} at step {final} as a stock transformers model")
    model, tokenizer = zoo.load(name, seed=seed, step=final, store=store)
    prompt = "Return the number of"
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=16, do_sample=False,
                             pad_token_id=tokenizer.eos_token_id)
    print(f"   {type(model).__name__}, {sum(p.numel() for p in model.parameters()):,} parameters")
    print(f"   greedy continuation of {prompt!r}: {tokenizer.decode(out[0])!r}")

    keyframes = store.run(RunId(cfg.family, cfg.size.name, seed)).keyframe_steps()
    target = next((s for s in reversed(stored) if s not in keyframes and s > 0), final)
    print(f"\n== 3. replay {name} seed {seed} step {target} from the keyframe before it")
    report = zoo.replay(name, seed=seed, step=target, store=store)
    print(f"   {report.verdict()} in {report.seconds:.2f}s")
    between = next(s for s in range(final - 1, 0, -1) if s not in stored)
    tic = time.perf_counter()
    zoo.load(name, seed=seed, step=between, store=store)
    print(f"   step {between} is not stored: served by exact replay in "
          f"{time.perf_counter() - tic:.2f}s")
    batch = zoo.batch(name, seed=seed, step=between, store=store)
    sample = int(batch_ids(name, seed=seed, step=between, store=store)[0])
    seen = zoo.steps_of(name, seed=seed, sample=sample, store=store)
    others = [s for s in seen if s != between]
    print(f"   step {between} trained on a batch of {tuple(batch.shape)} tokens; its first sample "
          f"({sample}) " + (f"was also trained on at steps {others}" if others else
                            f"was trained on at that step only (of {final} steps)"))

    print("\n== 4. summary")
    _summary(store, family)
    print(f"   replay: {report.verdict()}")
    return 0 if report.exact else 1


def _summary(store, family) -> None:
    from zoo.config.names import RunId
    from zoo.store.run_metrics import read_run_metrics

    total_bytes = store.location.fs.du(store.location.root, total=True)
    print(f"   store {store.url}: {total_bytes / 1e6:.1f} MB")
    print(f"   {'model':<16} {'seeds':>5} {'steps':>6} {'stored':>6}  train loss, last 10 steps: mean ± sd over seeds (per seed)")
    for size in family.sizes:
        name = f"{family.family}-{size.name}"
        losses = []
        stored_counts = []
        for run_cfg in (r for r in family.runs() if r.size.name == size.name):
            run = store.run(RunId(family.family, size.name, run_cfg.seed.seed))
            table = read_run_metrics(run)
            losses.append(statistics.mean(table.column("loss").to_pylist()[-10:]))
            stored_counts.append(len(run.checkpoint_steps()))
        spread = statistics.stdev(losses) if len(losses) > 1 else 0.0
        per_seed = ", ".join(f"{x:.3f}" for x in losses)
        print(f"   {name:<16} {len(losses):>5} {family.steps:>6} {stored_counts[0]:>6}  "
              f"{statistics.mean(losses):.3f} ± {spread:.3f} ({per_seed})")


if __name__ == "__main__":
    sys.exit(main())
