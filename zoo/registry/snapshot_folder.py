"""A snapshot: a run's weights at one step as a plain Hugging Face folder in the local cache.

The folder (config.json, model.safetensors, tokenizer files, and our zoo_snapshot.json record; a
toy-architecture run's also its modeling file, named by config.json's `auto_map`) is
built in a temporary folder beside its place and renamed into it, so a cached snapshot is always
whole. The cache is a copy, never a source of truth: the record names what the folder was built
from (`source`: the run's record, and the stored checkpoint's blobs, or, for a replayed step, the
keyframe it started from and the data index it read), and a folder is served only while the store
still holds exactly that. A store retrained in place, a branch label reused with other
interventions, an HTTP store retrained by its owner: each gets a freshly built folder.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from zoo.cache import cache_dir
from zoo.store.corpora import tokenizer_files
from zoo.store.run_store import RunStore

SNAPSHOT_RECORD = "zoo_snapshot.json"
# 2: a toy run's folder carries its modeling code. A cached folder of another format is rebuilt.
SNAPSHOT_FORMAT = 3  # 3: and the TransformerLens adapter beside it (transformer_lens_zoo_toy.py)
WEIGHTS = "model.safetensors"
PT_METADATA = {"format": "pt"}  # what transformers expects in a model.safetensors


def snapshot_folder(run: RunStore, step: int) -> Path:
    """Where the cache keeps (store, run, step): one folder per store URL."""
    store_key = hashlib.sha256(run.store.url.encode()).hexdigest()[:12]
    return cache_dir("snapshots", store_key, run.run_id.family, run.run_id.size,
                     run.run_id.folder) / f"step-{step}"


def weights_id(manifest: dict) -> str:
    """Names a stored checkpoint's exact weights (its blob references)."""
    return _digest(manifest["tensors"])


def stored_source(run: RunStore, manifest: dict) -> dict:
    """What a stored step's snapshot is built from: the run's record (config, corpus, HF config,
    a branch's interventions) and the checkpoint's blobs."""
    return {"kind": "stored", "run_record": _digest(run.read_json("run.json")),
            "weights_id": weights_id(manifest)}


def replayed_source(run: RunStore, keyframe_step: int, keyframe_manifest: dict,
                    index_record: dict) -> dict:
    """What a replayed step's snapshot is built from: the run's record, the keyframe replay
    started from (its weights, optimizer, RNG states and data cursor), and the data index."""
    return {"kind": "replayed", "run_record": _digest(run.read_json("run.json")),
            "keyframe_step": keyframe_step, "keyframe": _digest(keyframe_manifest),
            "index": _digest(index_record)}


def source_id(source: dict) -> str:
    return _digest(source)


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def is_current(folder: Path, source: dict) -> bool:
    """A cached snapshot built from exactly what the store holds now."""
    record = _record(folder)
    return record.get("format") == SNAPSHOT_FORMAT and record.get("source_id") == source_id(source)


def _record(folder: Path) -> dict:
    try:
        record = json.loads((folder / SNAPSHOT_RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def write_snapshot(folder: Path, *, run: RunStore, step: int, tensors: dict[str, torch.Tensor],
                   tokens_seen: int, source: dict) -> Path:
    """Write config, weights and tokenizer as an HF folder, atomically (temp folder + rename).

    `source` (stored_source / replayed_source) is what the tensors were built from."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        save_file({name: t.contiguous() for name, t in tensors.items()}, staging / WEIGHTS,
                  metadata=PT_METADATA)
        record = run.read_json("run.json")
        config = hf_config(record, {t.dtype for t in tensors.values()})
        from zoo.models.own_types import write_own_remote_code  # transformers: imported late

        write_own_remote_code(staging, config)  # our own architectures: opens without zoo
        config.save_pretrained(staging)
        for file, data in tokenizer_files(run.store, record["corpus_fingerprint"]).items():
            (staging / file).write_bytes(data)
        (staging / SNAPSHOT_RECORD).write_text(json.dumps({
            "format": SNAPSHOT_FORMAT, "run": run.run_id.key, "model_name": run.run_id.model_name, "seed": run.run_id.seed,
            "init_seed": record.get("init_seed"), "data_seed": record.get("data_seed"),
            "step": step, "tokens_seen": tokens_seen, "config_hash": record["config_hash"],
            "corpus_fingerprint": record["corpus_fingerprint"], "store": run.store.url,
            "source": source, "source_id": source_id(source),
        }, indent=2))
        _publish(staging, folder, source_id(source))
        return folder
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: Path, folder: Path, built_from: str) -> None:
    """Rename the complete staging folder into place. A folder already there built from the same
    source (another process was first) is kept as it is: it may be open. A stale one is renamed
    aside before it is removed, so that nobody ever finds the place half deleted."""
    try:
        staging.rename(folder)
        return
    except OSError:
        if not folder.exists():
            raise
    record = _record(folder)  # {} when unreadable: a damaged folder, replaced
    if record.get("format") == SNAPSHOT_FORMAT and record.get("source_id") == built_from:
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".stale", dir=folder.parent))
    folder.rename(aside / "old")
    try:
        staging.rename(folder)
    except OSError:  # yet another process published in the meantime: its copy is as good
        if not (folder / SNAPSHOT_RECORD).exists():
            raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def hf_config(record: dict, dtypes: set[torch.dtype]):
    """The run's transformers config, naming its model class and dtype for any HF tool."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from zoo.models.own_types import register_own_models

    register_own_models()  # AutoConfig must know our model types to rebuild such a config
    hf_config = dict(record["hf_config"])
    model_type = hf_config.pop("model_type")
    config = AutoConfig.for_model(model_type, **hf_config)
    if not config.architectures and model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        config.architectures = [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type]]
    floating = {dtype for dtype in dtypes if dtype.is_floating_point}
    if len(floating) == 1:
        config.dtype = floating.pop()
    return config
