"""Replay benchmark (issue 5): the cost of replaying a step, and what keyframes buy in storage.

1. replay of one step — `replay_run(run, k+1)` from keyframe k (a step with no stored checkpoint,
   so no comparison is made) against the same work done by hand with the same store API calls:
   read run.json, open the corpus and data index, read the keyframe, build the model, load
   weights, optimizer, scheduler and RNG states, take the recorded batch, one `training_step`.
   Repetitions alternate A B B A ...; medians. The hand result is checked bit-equal to replay's.
2. for the tiny family's sizes (seed 1, a shortened run: STEPS steps instead of 300), storage of
   (keyframes + data index) against storing every step's weights, and the median time of
   `zoo.load` for a step that is not stored (replayed from the keyframe before it, then written
   as an HF snapshot and opened with from_pretrained), as a table by keyframe interval K.
   How: the family is trained ONCE with keyframes (and checkpoints) every 8 steps. Keyframes never
   change training, so the store for K in {16, 32, 64} is exactly that store minus the keyframes
   off the K grid: each K gets a copy with those manifests removed, and its storage is measured
   from the actual blob files its keyframe manifests reference (content-addressed, shared blobs
   counted once). "Every step's weights" is estimated from the same blobs: a tensor whose blob
   never changes is counted once, every other tensor (STEPS + 1) x its mean compressed size.

    python benchmarks/bench_replay.py                  # ~2-3 min on the 2-core machine
    python benchmarks/bench_replay.py --threads 1 --steps 64 --loads 3
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from markdown_table import table  # noqa: E402  (benchmarks/, beside this file)

import zoo
from data_index import StepIndex
from training.sweep import train_family
from zoo.config.run_config import RunConfig
from zoo.store.corpora import open_corpus
from zoo.config.names import RunId
from zoo.engine.step_replay import replay_run
from zoo.store.run_store import CHECKPOINTS, KEYFRAMES, RunStore
from zoo.store.store import Store
from zoo.engine.training_state import restore_state

TINY = ROOT / "manifests" / "tiny.yaml"
FAMILY = "tinyreplay"
KS = (8, 16, 32, 64)


def write_manifest(folder: Path, *, steps: int, k: int) -> str:
    """The tiny family (sizes, data, optimizer, schedule shape), seed 1, keyframes every k, and
    checkpoints only at keyframes, so the store holds exactly what makes every step reachable."""
    doc = yaml.safe_load(TINY.read_text())
    doc.update(family=FAMILY, seeds=[1], steps=steps,
               checkpoints={"log_spaced_until": 0, "every": k, "keyframe_every": k})
    path = folder / f"{FAMILY}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


# --- 1. replay vs by hand --------------------------------------------------------------------
def by_hand(run: RunStore, step: int, *, store: Store) -> torch.nn.Module:
    """Keyframe step-1 + one training step, with the store API a researcher would call."""
    record = run.read_json("run.json")
    cfg = RunConfig.from_json(record["config"])
    corpus = open_corpus(store, record["corpus_fingerprint"])
    index = StepIndex.open(run.index_location)
    state = restore_state(run, cfg, step - 1, vocab_size=corpus.vocab_size,
                          eos_token_id=corpus.eos_id, device="cpu")
    state.update(torch.from_numpy(corpus.samples(index.batch_ids(step))))
    return state.model


def replay_vs_hand(run: RunStore, step: int, *, store: Store, reps: int) -> dict:
    hand_model = by_hand(run, step, store=store)  # warm-up of both paths, and the bit check
    report = replay_run(run, step, store=store, progress=False)
    from zoo.engine.step_replay import advance

    replayed = advance(run, step, store=store, progress=False).model.state_dict()
    same = all(torch.equal(v, replayed[k]) for k, v in hand_model.state_dict().items())
    times = {"replay": [], "hand": []}
    for rep in range(reps):
        for which in (("replay", "hand") if rep % 2 == 0 else ("hand", "replay")):
            tic = time.perf_counter()
            if which == "replay":
                replay_run(run, step, store=store, progress=False)
            else:
                by_hand(run, step, store=store)
            times[which].append(time.perf_counter() - tic)
    return {"times": times, "same_bits": same, "compared": report.compared}


# --- 2. storage and load time by K -----------------------------------------------------------
def blob_size(store: Store, sha: str) -> int:
    return os.path.getsize(store.location.local_path(store.blobs.relpath(sha)))


def tensor_refs(tree) -> list[dict]:
    """Every {"blob": ...} reference in a keyframe manifest part (state_tree JSON form)."""
    if isinstance(tree, dict):
        if "$tensor" in tree:
            return [tree["$tensor"]]
        if "blob" in tree and "nbytes" in tree:
            return [tree]
        return [r for v in tree.values() for r in tensor_refs(v)]
    if isinstance(tree, list):
        return [r for v in tree for r in tensor_refs(v)]
    return []


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def keep_only_grid(store: Store, run: RunStore, k: int, last: int) -> None:
    """Remove checkpoint and keyframe manifests off the K grid (the final step stays)."""
    for folder in (KEYFRAMES, CHECKPOINTS):
        for step in run._steps(folder):
            if step % k and step != last:
                run.location.remove(run.manifest_name(folder, step))


def storage(store: Store, runs: list[RunStore]) -> tuple[int, int, int]:
    """(keyframe bytes: blobs once + manifests, index bytes, checkpoint+keyframe files count)."""
    shas, manifests, index = set(), 0, 0
    for run in runs:
        for step in run.keyframe_steps():
            manifest = run.keyframe_manifest(step)
            shas.update(r["blob"] for r in tensor_refs(manifest))
            manifests += os.path.getsize(run.location.local_path(run.manifest_name(KEYFRAMES, step)))
        for step in run.checkpoint_steps():
            manifests += os.path.getsize(run.location.local_path(run.manifest_name(CHECKPOINTS, step)))
        index += folder_bytes(Path(run.index_location.local_path()))
    return sum(blob_size(store, s) for s in shas) + manifests, index, len(shas)


def every_step_weights(store: Store, run: RunStore, steps: int) -> int:
    """Estimated bytes of storing the weights of steps 0..steps with our codec."""
    per_tensor: dict[str, list[str]] = {}
    for step in run.checkpoint_steps():
        for name, ref in run.checkpoint_manifest(step)["tensors"].items():
            per_tensor.setdefault(name, []).append(ref["blob"])
    total = 0
    for blobs in per_tensor.values():
        sizes = [blob_size(store, s) for s in blobs]
        total += sizes[0] if len(set(blobs)) == 1 else round(statistics.mean(sizes) * (steps + 1))
    manifest = statistics.mean(
        os.path.getsize(run.location.local_path(run.manifest_name(CHECKPOINTS, s)))
        for s in run.checkpoint_steps())
    return total + round(manifest * (steps + 1))


def load_steps(k: int, steps: int, n: int) -> list[int]:
    """n non-stored steps, in different keyframe intervals, offsets spread over (0, K)."""
    starts = list(range(0, steps - k + 1, k))
    chosen = []
    for i in range(n):
        offset = min(k - 1, max(1, round((i + 0.5) / n * k)))
        chosen.append(starts[(i * 7) % len(starts)] + offset)
    return chosen


def timed_load(name: str, step: int, store: Store, cache: Path) -> float:
    os.environ["ZOO_CACHE"] = str(cache)  # a fresh cache: nothing served from an earlier load
    try:
        tic = time.perf_counter()
        zoo.load(name, seed=1, step=step, store=store)
        return time.perf_counter() - tic
    finally:
        os.environ.pop("ZOO_CACHE", None)


def mb(n: int) -> str:
    return f"{n / 1e6:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=64, help="steps per run (tiny: 300)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5, help="replay vs hand repetitions")
    parser.add_argument("--loads", type=int, default=3, help="non-stored steps loaded per K")
    parser.add_argument("--size", default="2l128", help="tiny size for replay and load timing")
    args = parser.parse_args()
    if args.steps % max(KS):
        parser.error(f"--steps must be a multiple of {max(KS)}")
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="bench_replay_") as tmp:
        root = Path(tmp)
        base = Store.open(root / "k8")
        tic = time.perf_counter()
        train_family(write_manifest(root, steps=args.steps, k=min(KS)), store=base,
                     threads=args.threads, progress=False)
        print(f"  trained {FAMILY} ({args.steps} steps x 3 sizes) in {time.perf_counter() - tic:.1f}s",
              file=sys.stderr)
        sizes = [r.size for r in base.runs()]

        # 1. replay of one step vs by hand
        run = base.run(RunId(FAMILY, args.size, 1))
        step = min(KS) + 1
        result = replay_vs_hand(run, step, store=base, reps=args.reps)
        replay_s = statistics.median(result["times"]["replay"])
        hand_s = statistics.median(result["times"]["hand"])

        # 2. storage and load time by K
        rows, weights_total = [], sum(
            every_step_weights(base, base.run(RunId(FAMILY, s, 1)), args.steps) for s in sizes)
        name = f"{FAMILY}-{args.size}"
        for k in KS:
            store = Store.open(root / f"store-k{k}")
            if k != min(KS):
                shutil.copytree(root / "k8", root / f"store-k{k}", dirs_exist_ok=True)
            else:
                store = base
            runs = [store.run(RunId(FAMILY, s, 1)) for s in sizes]
            for r in runs:
                keep_only_grid(store, r, k, args.steps)
            key_bytes, index_bytes, _n_blobs = storage(store, runs)
            loads = []
            for target in load_steps(k, args.steps, args.loads):
                seconds = timed_load(name, target, store, root / f"cache-k{k}-{target}")
                loads.append(seconds)
                print(f"  K={k}: load step {target} {seconds:.2f}s", file=sys.stderr)
            stored = timed_load(name, k, store, root / f"cache-k{k}-stored")
            ours = key_bytes + index_bytes
            rows.append((k, len(runs[0].keyframe_steps()), mb(key_bytes), mb(index_bytes), mb(ours),
                         mb(weights_total), f"{weights_total / ours:.1f}x",
                         f"{statistics.median(loads):.2f}", f"{max(loads):.2f}", f"{stored:.2f}"))

    ratio = replay_s / hand_s
    print(f"\nRuns: {FAMILY} = tiny's sizes {', '.join(sizes)}, seed 1, {args.steps} steps, batch 16 x 64, "
          f"{args.threads} threads\n")
    print(table([
        (f"replay_run({args.size}, step {step}) from keyframe {step - 1}", f"{replay_s * 1e3:.0f}",
         f"{ratio:.2f}"),
        ("by hand: keyframe + one training_step", f"{hand_s * 1e3:.0f}", "1.00"),
    ], ("one step", "median ms", "ratio")))
    print(f"\nreplay/hand: {ratio:.2f} (target <= 1.2: {'met' if ratio <= 1.2 else 'MISSED'}); "
          f"hand result bit-equal to replay: {result['same_bits']}; runs (s): replay "
          f"{', '.join(f'{t:.3f}' for t in result['times']['replay'])}; hand "
          f"{', '.join(f'{t:.3f}' for t in result['times']['hand'])}\n")
    print(table(rows, ("K", "keyframes/run", "keyframes MB", "index MB", "keyframes+index MB",
                       f"every step's weights MB ({args.steps + 1} steps)", "saving",
                       f"load non-stored {args.size} median s", "max s", "load stored s")))


if __name__ == "__main__":
    main()
