"""The registry: fetch a model by name / seed / step as a stock `transformers` model.

`snapshot` materializes a standard Hugging Face folder (config.json, model.safetensors, tokenizer
files) in the local cache, so TransformerLens, nnsight and any HF tool can open it; `load` returns a
stock `transformers` model and its tokenizer. Snapshots are written to a temporary folder and
renamed into place, so a cached snapshot is always whole; a cached snapshot records which blobs it
was built from and is rebuilt if the store's checkpoint changed, so it never serves stale weights.

A cold `load` (no snapshot cached yet) decodes each blob straight into the snapshot's
model.safetensors and builds the model on that file (see _cold_load), so loading and caching take
one pass over the weights.
"""
from __future__ import annotations

import copy
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from data_index.arguments import whole_number
from data_index.errors import ZooError
from zoo.blobs import DTYPES
from zoo.cache import cache_dir
from zoo.names import RunId
from zoo.safetensors_file import PT_METADATA, SafetensorsWriter, can_write, save_tensors
from zoo.store import RunStore, Store, format_steps, reaching

SNAPSHOT_RECORD = "zoo_snapshot.json"
WEIGHTS = "model.safetensors"


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
        if steps:  # a run folder with no checkpoint yet (training just started) is not a model
            grouped.setdefault((run_id.family, run_id.size), {})[run_id.seed] = steps
    return [
        ModelInfo(f"{family}-{size}", family, size, tuple(sorted(by_seed)), dict(sorted(by_seed.items())))
        for (family, size), by_seed in sorted(grouped.items())
    ]


def resolve_run(name: str, seed: int, *, store: Store) -> RunStore:
    """The stored run for a model name and seed; errors list what exists."""
    run_id = RunId.from_name(name, seed)
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
    step = whole_number(step, "step")
    store = _store(store)
    run = resolve_run(name, seed, store=store)
    stored = run.checkpoint_steps()
    check_step(run, step, stored)
    if step not in stored:
        from zoo.reachable import materialize_step  # replay serves steps between checkpoints

        return materialize_step(run, step, store=store)
    folder = _snapshot_folder(store, run, step)
    manifest = run.checkpoint_manifest(step)
    if _is_current(folder, manifest):
        return folder
    refs = manifest["tensors"]

    def write_weights(path: Path) -> None:
        if can_write(refs):  # decoded straight into the file, no tensor-sized memory
            _write_weights(run, step, refs, path)
        else:
            save_tensors(run.read_checkpoint(step).tensors, path, metadata=PT_METADATA)

    return _build_snapshot(folder, write_weights, run=run, store=store, step=step,
                           dtypes=_ref_dtypes(refs), tokens_seen=manifest["tokens_seen"],
                           weights_id=_weights_id(manifest))


def load(name: str, *, seed: int, step: int, store: str | Store | None = None,
         device: str = "cpu"):
    """(model, tokenizer): a stock transformers causal LM in eval mode, and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zoo.environment import check_device

    step, device = whole_number(step, "step"), check_device(device)

    store = _store(store)
    run = resolve_run(name, seed, store=store)
    stored = run.checkpoint_steps()
    check_step(run, step, stored)
    folder = _snapshot_folder(store, run, step)
    options = {"dtype": "auto", "attn_implementation": "eager"}
    manifest = run.checkpoint_manifest(step) if step in stored else None
    if manifest is None:  # not stored: replayed from the keyframe before it, then cached
        from zoo.reachable import materialize_step

        folder = materialize_step(run, step, store=store)
    elif not _is_current(folder, manifest):
        if can_write(manifest["tensors"]):
            model, tokenizer = _cold_load(run, store, step, folder, manifest, options)
            return model.to(device).eval(), tokenizer
        folder = snapshot(name, seed=seed, step=step, store=store)
    model = AutoModelForCausalLM.from_pretrained(folder, **options)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return model.to(device).eval(), tokenizer


def _cold_load(run: RunStore, store: Store, step: int, folder: Path, manifest: dict,
               options: dict):
    """Load a stored step whose snapshot is not cached yet, and cache it on the way.

    One pass decodes each blob into a reused buffer, verifies it and writes it into the snapshot's
    model.safetensors (zoo/safetensors_file.py), whose layout is known from the manifest before
    any blob is read. The model's tensors are copy-on-write maps of that file, as `from_pretrained`
    makes them, so the weights occupy the page cache once and no tensor-sized memory is allocated
    (fresh memory is the costly part of a load, see codec.py).

    The blobs start decoding on the pool first. Meanwhile this thread does everything that does
    not need the weights' values, all of it Python: the tokenizer (on a local store, from the
    corpus's tokenizer files), the empty model (config and dtypes come from the manifest) and the
    rest of the snapshot folder. Then it decodes too (shared_drain.py says why in that order).
    Mapping the file and assigning its tensors to the model while the blobs were still being
    written into it made the load slower, not faster (82 -> 100 ms for the 21 MB model, measured
    alternating in one process), so the tensors are mapped once the file is complete.
    """
    from safetensors.torch import load_file
    from transformers import AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    refs = manifest["tensors"]
    staging = _begin_snapshot(folder)
    weights_file = staging / WEIGHTS
    try:
        weights = SafetensorsWriter(weights_file, refs)  # the whole file's size, laid out
        try:
            reads = run.start_checkpoint_reads(step, manifest, weights.write)
            try:
                record = run.read_json("run.json")
                config = _hf_config(record, _ref_dtypes(refs))
                model_class = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]  # what the Auto class picks
                tokenizer_files = store.corpus_location(record["corpus_fingerprint"]).child("tokenizer")
                # given the config, AutoTokenizer does not look for one (0.6 ms; same tokenizer)
                tokenizer = (AutoTokenizer.from_pretrained(tokenizer_files.root, config=config)
                             if tokenizer_files.is_local else None)
                skeleton = _empty_model(model_class, config, refs, options)
                _describe_snapshot(staging, run=run, store=store, step=step, record=record,
                                   config=config, tokens_seen=manifest["tokens_seen"],
                                   weights_id=_weights_id(manifest))
            except BaseException:
                reads.cancel()  # the file stays open until the last write into it is done
                raise
            with reaching(store.url):
                reads.finish()
        finally:
            weights.close()
        tensors = load_file(weights_file)  # copy-on-write maps of the file's page cache
        model = _model_from_tensors(model_class, config, tensors, options, skeleton=skeleton)
        folder = _publish_snapshot(staging, folder)
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    # as if both were read from the folder, like the cached path does
    model.config.name_or_path = model.name_or_path = tokenizer.name_or_path = str(folder)
    return model, tokenizer


def _write_weights(run: RunStore, step: int, refs: dict, path: Path) -> None:
    """Decode, verify and write every tensor of the checkpoint into a safetensors file."""
    weights = SafetensorsWriter(path, refs)
    try:
        run.read_checkpoint_bytes(step, weights.write)
    finally:
        weights.close()


def _ref_dtypes(refs: dict) -> set[torch.dtype]:
    return {DTYPES[r["dtype"]] for r in refs.values() if isinstance(r, dict) and r.get("dtype") in DTYPES}


def _empty_model(model_class, config, refs: dict, options: dict):
    """For an fp32 checkpoint, the stock model built without initializing its weights (the tensors
    are assigned later, see _model_from_tensors); None otherwise."""
    from transformers.initialization import no_init_weights

    dtypes = [DTYPES.get(ref.get("dtype")) for ref in refs.values()]
    if any(d is None or (d.is_floating_point and d != torch.float32) for d in dtypes):
        return None
    direct_config = copy.deepcopy(config)
    direct_config._attn_implementation = options["attn_implementation"]
    with no_init_weights():
        return model_class(direct_config)


def _model_from_tensors(model_class, config, tensors: dict, options: dict, *, skeleton=None):
    """The stock model holding exactly `tensors`. For fp32 checkpoints that name every tensor of
    the model, the tensors are assigned (no copy) to `skeleton` (_empty_model): 13 ms
    instead of 31 ms for a 21 MB model, the skeleton built while the blobs decode (bench_load.py),
    with the same weights, buffers, config and logits as `from_pretrained` of the snapshot (tested).
    Anything else goes through `from_pretrained(state_dict=...)`, which handles dtypes and renamed
    keys."""
    if skeleton is not None and set(skeleton.state_dict()) == set(tensors):
        skeleton.load_state_dict(tensors, assign=True, strict=True)
        skeleton.tie_weights()
        return skeleton.eval()
    return model_class.from_pretrained(None, config=config, state_dict=tensors, **options)


def check_step(run: RunStore, step: int, stored: list[int]) -> None:
    """Refuse a step the run cannot serve, saying what is stored and what can be replayed."""
    if step in stored:
        return
    last = int(run.status().get("last_step", stored[-1] if stored else 0))
    keyframes = run.keyframe_steps()
    if 0 < step <= last and keyframes:
        return  # reachable by replay from the keyframe before it
    config = run.read_json("run.json").get("config", {})
    every = config.get("checkpoints", {}).get("keyframe_every")
    replay = (f"keyframes every {every}; any step 1..{last} can be replayed" if keyframes
              else "no keyframes, so only stored steps can be loaded")
    raise ZooError(f"no step {step} for {run.run_id}; stored: {format_steps(stored)}, {replay}")


def write_snapshot(folder: Path, *, run: RunStore, store: Store, step: int, tensors: dict,
                   tokens_seen: int, weights_id: str | None = None) -> Path:
    """Write config, weights and tokenizer as an HF folder, atomically (temp folder + rename).

    `weights_id` names the stored checkpoint the tensors came from (None for replayed steps); a
    cached snapshot whose id no longer matches the store is rebuilt.
    """
    return _build_snapshot(folder, lambda path: save_tensors(tensors, path, metadata=PT_METADATA),
                           run=run, store=store, step=step, dtypes={t.dtype for t in tensors.values()},
                           tokens_seen=tokens_seen, weights_id=weights_id)


def _build_snapshot(folder: Path, write_weights, *, run: RunStore, store: Store, step: int,
                    dtypes: set[torch.dtype], tokens_seen: int, weights_id: str | None) -> Path:
    """Stage the folder (`write_weights(path)` writes model.safetensors), then rename it in place."""
    staging = _begin_snapshot(folder)
    try:
        write_weights(staging / WEIGHTS)
        record = run.read_json("run.json")
        _describe_snapshot(staging, run=run, store=store, step=step, record=record,
                           config=_hf_config(record, dtypes), tokens_seen=tokens_seen,
                           weights_id=weights_id)
        return _publish_snapshot(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _begin_snapshot(folder: Path) -> Path:
    """A fresh staging folder beside `folder` (same filesystem, so the final rename is atomic)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))


def _describe_snapshot(staging: Path, *, run: RunStore, store: Store, step: int, record: dict,
                       config, tokens_seen: int, weights_id: str | None) -> None:
    """Write everything of the folder but the weights: config, tokenizer files, our record.
    `record` is the run's run.json, `config` its _hf_config."""
    config.save_pretrained(staging)
    tokenizer = store.corpus_location(record["corpus_fingerprint"]).child("tokenizer")
    for file in tokenizer.list():
        (staging / file).write_bytes(tokenizer.read_bytes(file))
    (staging / SNAPSHOT_RECORD).write_text(json.dumps({
        "run": run.run_id.key, "model_name": run.run_id.model_name, "seed": run.run_id.seed,
        "init_seed": record.get("init_seed"), "data_seed": record.get("data_seed"),
        "step": step, "tokens_seen": tokens_seen, "config_hash": record["config_hash"],
        "corpus_fingerprint": record["corpus_fingerprint"], "weights_id": weights_id,
        "store": store.url,
    }, indent=2))


def _publish_snapshot(staging: Path, folder: Path) -> Path:
    """Rename the complete staging folder into place (replacing a stale one)."""
    shutil.rmtree(folder, ignore_errors=True)
    try:
        staging.rename(folder)
    except OSError:  # another process renamed its whole copy into place first: use that one
        if not (folder / SNAPSHOT_RECORD).exists():
            raise
    return folder


def _hf_config(record: dict, dtypes: set[torch.dtype]):
    """The run's transformers config, naming its model class and dtype for any HF tool."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    hf_config = dict(record["hf_config"])
    model_type = hf_config.pop("model_type")
    config = AutoConfig.for_model(model_type, **hf_config)
    if not config.architectures and model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        config.architectures = [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type]]
    floating = {dtype for dtype in dtypes if dtype.is_floating_point}
    if len(floating) == 1:
        config.dtype = floating.pop()
    return config


def _weights_id(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest["tensors"], sort_keys=True).encode()).hexdigest()


def _is_current(folder: Path, manifest: dict) -> bool:
    """A cached snapshot built from exactly the blobs the store's checkpoint names now."""
    try:
        record = json.loads((folder / SNAPSHOT_RECORD).read_text())
    except (OSError, ValueError):
        return False
    return record.get("weights_id") == _weights_id(manifest)


def _snapshot_folder(store: Store, run: RunStore, step: int) -> Path:
    store_key = hashlib.sha256(store.url.encode()).hexdigest()[:12]
    return cache_dir("snapshots", store_key, run.run_id.family, run.run_id.size,
                     f"seed-{run.run_id.seed}") / f"step-{step}"


def _store(store: str | Store | None) -> Store:
    """The store the registry reads. A folder or URL holding no store is an error, not an empty
    store: almost always a mistyped path (or the default ./zoo-store in another folder)."""
    if isinstance(store, Store):
        return store
    opened = Store.open(store)
    if not opened.exists():
        raise ZooError(f"no Model Zoo store at {opened.url}: nothing was ever trained there; check "
                       f"the path (store=..., else $ZOO_STORE, else ./zoo-store)")
    return opened
