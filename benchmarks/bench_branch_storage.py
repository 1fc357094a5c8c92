"""Branch storage: what a branch of 50 steps adds to a store, against a full copy of its run.

A run of 100 steps (a 2-layer GPT-NeoX of width 128, checkpoints every 10 steps, keyframes every
50) is trained; then branches of it from step 50 to 100 with different interventions. For each
branch: the bytes of the blobs it added (content addressing stores a tensor once, whoever wrote
it) plus its own folder (manifests, index, metrics), against the bytes a full copy of the run
costs (its folder plus every blob it references). Also the time each branch took to make.

    python benchmarks/bench_branch_storage.py
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.markdown_table import table  # noqa: E402
from training.branching import branch  # noqa: E402
from training.sweep import train_family  # noqa: E402
from zoo.config.names import RunId  # noqa: E402
from zoo.store.gc import referenced_blobs  # noqa: E402
from zoo.store.store import Store  # noqa: E402

MANIFEST = {
    "family": "bench", "architecture": "gpt-neox",
    "sizes": [{"name": "2l128", "layers": 2, "width": 128, "heads": 4}],
    "seeds": [1],
    "data": {"source": "builtin:pydoc?max_docs=400", "vocab_size": 1024, "seq_len": 64},
    "batch_size": 16, "steps": 100,
    "checkpoints": {"log_spaced_until": 0, "every": 10, "keyframe_every": 50},
}


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def blob_bytes(store: Store, shas) -> int:
    return sum((store.location.local_path() / store.blobs.relpath(sha)).stat().st_size for sha in shas)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-branch-"))
    manifest = work / "bench.yaml"
    manifest.write_text(yaml.safe_dump(MANIFEST))
    store = Store.open(str(work / "store"))
    train_family(str(manifest), store=store, threads=2, progress=False)
    parent = RunId("bench", "2l128", 1)
    run_folder = store.location.local_path() / "runs" / "bench" / "2l128" / "seed-1"
    full_copy = folder_bytes(run_folder) + blob_bytes(store, set(referenced_blobs(store)))
    sample_ids = list(range(0, 1200, 3))  # 400 of the corpus's ~1,300 samples
    cases = [
        ("null (no intervention)", "null", {}),
        ("null from step 55 (not a keyframe)", "null55", {"from_step": 55}),
        ("drop 400 samples", "drop", {"drop_samples": sample_ids}),
        ("lr x 0.5", "slow", {"lr_scale": 0.5}),
        ("reinit layer 0 attention", "reattn", {"reinit": ["gpt_neox.layers.0.attention.*"]}),
    ]
    rows = []
    for what, label, options in cases:
        before = set(store.blobs.list_all())
        tic = time.perf_counter()
        branch("bench-2l128", seed=1, label=label, store=store, progress=False,
               **{"from_step": 50, **options})
        seconds = time.perf_counter() - tic
        added = blob_bytes(store, set(store.blobs.list_all()) - before)
        own = folder_bytes(run_folder.with_name(f"seed-1@{label}"))
        rows.append((what, f"{added / 1e6:.2f}", f"{own / 1e6:.3f}", f"{(added + own) / 1e6:.2f}",
                     f"{(added + own) / full_copy:.1%}", f"{seconds:.1f}"))
    print(f"run {parent.key}: 100 steps, 11 checkpoints, 3 keyframes; a full copy is "
          f"{full_copy / 1e6:.2f} MB (folder + referenced blobs); each branch: steps 50..100\n")
    print(table(rows, ("branch", "new blobs MB", "own folder MB", "total MB", "of a full copy",
                       "seconds")))


if __name__ == "__main__":
    main()
