"""The registry: fetch a model by name / seed / step as a stock `transformers` model.

`snapshot` materializes a standard Hugging Face folder (config.json, model.safetensors, tokenizer
files) in the local cache, so TransformerLens, nnsight and any HF tool can open it; `load` returns
`AutoModelForCausalLM.from_pretrained(snapshot)` and its tokenizer. Snapshots are written to a
temporary folder and renamed into place, so a cached snapshot is always whole.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from data_index.errors import ZooError
from zoo.cache import cache_dir
from zoo.names import RunId, parse_model_name
from zoo.store import RunStore, Store

SNAPSHOT_RECORD = "zoo_snapshot.json"


@dataclass(frozen=True)
class ModelInfo:
    name: str  # <family>-<size>
    family: str
    size: str
    seeds: tuple[int, ...]
    steps: dict[int, tuple[int, ...]]  # seed -> stored checkpoint steps


def list_models(*, store: str | Store | None = None) -> list[ModelInfo]:
    """Every model name in the store with its seeds and stored steps."""
    store = _store(store)
    grouped: dict[tuple[str, str], dict[int, tuple[int, ...]]] = {}
    for run_id in store.runs():
        steps = tuple(store.run(run_id).checkpoint_steps())
        grouped.setdefault((run_id.family, run_id.size), {})[run_id.seed] = steps
    return [
        ModelInfo(f"{family}-{size}", family, size, tuple(sorted(by_seed)), dict(sorted(by_seed.items())))
        for (family, size), by_seed in sorted(grouped.items())
    ]


def resolve_run(name: str, seed: int, *, store: Store) -> RunStore:
    """The stored run for a model name and seed; errors list what exists."""
    family, size = parse_model_name(name)
    run_id = RunId(family, size, int(seed))
    run = store.run(run_id)
    if run.exists() and run.checkpoint_steps():
        return run
    models = list_models(store=store)
    match = [m for m in models if m.name == name]
    if not match:
        names = ", ".join(m.name for m in models) or "none (train one with `zoo train tiny`)"
        raise ZooError(f"no model {name!r} in store {store.url}; models: {names}")
    seeds = ", ".join(str(s) for s in match[0].seeds)
    raise ZooError(f"no seed {seed} for {name} in store {store.url}; seeds: {seeds}")


def steps(name: str, *, seed: int, store: str | Store | None = None) -> list[int]:
    """Stored checkpoint steps of a run, ascending integers."""
    return resolve_run(name, seed, store=_store(store)).checkpoint_steps()


def snapshot(name: str, *, seed: int, step: int, store: str | Store | None = None) -> Path:
    """A local Hugging Face folder for (name, seed, step), cached and reused."""
    store = _store(store)
    run = resolve_run(name, seed, store=store)
    stored = run.checkpoint_steps()
    if step not in stored:
        from zoo.reachable import materialize_step  # replay serves steps between checkpoints

        return materialize_step(run, step, store=store)
    folder = _snapshot_folder(store, run, step)
    if (folder / SNAPSHOT_RECORD).exists():
        return folder
    checkpoint = run.read_checkpoint(step)
    return write_snapshot(folder, run=run, store=store, step=step, tensors=checkpoint.tensors,
                          tokens_seen=checkpoint.tokens_seen)


def load(name: str, *, seed: int, step: int, store: str | Store | None = None,
         device: str = "cpu"):
    """(model, tokenizer): a stock transformers causal LM in eval mode, and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = snapshot(name, seed=seed, step=step, store=store)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype="auto", attn_implementation="eager").to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return model, tokenizer


def write_snapshot(folder: Path, *, run: RunStore, store: Store, step: int, tensors: dict,
                   tokens_seen: int) -> Path:
    """Write config, weights and tokenizer as an HF folder, atomically (temp folder + rename)."""
    from safetensors.torch import save_file
    from transformers import AutoConfig

    record = run.read_json("run.json")
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    hf_config = dict(record["hf_config"])
    config = AutoConfig.for_model(hf_config.pop("model_type"), **hf_config)
    config.save_pretrained(staging)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(staging / "model.safetensors"),
              metadata={"format": "pt"})
    tokenizer = store.corpus_location(record["corpus_fingerprint"]).child("tokenizer")
    for file in tokenizer.list():
        (staging / file).write_bytes(tokenizer.read_bytes(file))
    (staging / SNAPSHOT_RECORD).write_text(json.dumps({
        "run": run.run_id.key, "model_name": run.run_id.model_name, "seed": run.run_id.seed,
        "step": step, "tokens_seen": tokens_seen, "config_hash": record["config_hash"],
        "corpus_fingerprint": record["corpus_fingerprint"], "store": store.url,
    }, indent=2))
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return folder


def _snapshot_folder(store: Store, run: RunStore, step: int) -> Path:
    store_key = hashlib.sha256(store.url.encode()).hexdigest()[:12]
    return cache_dir("snapshots", store_key, run.run_id.family, run.run_id.size,
                     f"seed-{run.run_id.seed}") / f"step-{step}"


def _store(store: str | Store | None) -> Store:
    return store if isinstance(store, Store) else Store.open(store)
