"""A snapshot: a run's weights at one step as a plain Hugging Face folder in the local cache.

The folder (config.json, model.safetensors, tokenizer files, and our zoo_snapshot.json record; a
toy-architecture run's also its modeling file, named by config.json's `auto_map`) is
built in a temporary folder beside its place and renamed into it, so a cached snapshot is always
whole. The record names the stored checkpoint it was built from (`weights_id`), so a snapshot
whose checkpoint changed in the store is rebuilt instead of served stale.
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
from zoo.store.run_store import RunStore

SNAPSHOT_RECORD = "zoo_snapshot.json"
# 2: a toy run's folder carries its modeling code. A cached folder of another format is rebuilt.
SNAPSHOT_FORMAT = 2
WEIGHTS = "model.safetensors"
PT_METADATA = {"format": "pt"}  # what transformers expects in a model.safetensors


def snapshot_folder(run: RunStore, step: int) -> Path:
    """Where the cache keeps (store, run, step): one folder per store URL."""
    store_key = hashlib.sha256(run.store.url.encode()).hexdigest()[:12]
    return cache_dir("snapshots", store_key, run.run_id.family, run.run_id.size,
                     run.run_id.folder) / f"step-{step}"


def weights_id(manifest: dict) -> str:
    """Names a stored checkpoint's exact weights (its blob references)."""
    return hashlib.sha256(json.dumps(manifest["tensors"], sort_keys=True).encode()).hexdigest()


def is_current(folder: Path, manifest: dict) -> bool:
    """A cached snapshot built from exactly the blobs the store's checkpoint names now."""
    record = _record(folder)
    return record.get("format") == SNAPSHOT_FORMAT and record.get("weights_id") == weights_id(manifest)


def is_built(folder: Path) -> bool:
    """A cached snapshot of this format (a replayed step's: no stored checkpoint to compare with)."""
    return _record(folder).get("format") == SNAPSHOT_FORMAT


def _record(folder: Path) -> dict:
    try:
        record = json.loads((folder / SNAPSHOT_RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def write_snapshot(folder: Path, *, run: RunStore, step: int, tensors: dict[str, torch.Tensor],
                   tokens_seen: int, weights_id: str | None = None) -> Path:
    """Write config, weights and tokenizer as an HF folder, atomically (temp folder + rename).

    `weights_id` names the stored checkpoint the tensors came from (None for replayed steps)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        save_file({name: t.contiguous() for name, t in tensors.items()}, staging / WEIGHTS,
                  metadata=PT_METADATA)
        record = run.read_json("run.json")
        config = hf_config(record, {t.dtype for t in tensors.values()})
        from zoo.models.toy import TOY_MODEL_TYPE, write_remote_code  # transformers: imported late
        if config.model_type == TOY_MODEL_TYPE:  # carry the modeling code: opens without zoo
            write_remote_code(staging, config)
        config.save_pretrained(staging)
        tokenizer = run.store.corpus_location(record["corpus_fingerprint"]).child("tokenizer")
        for file in tokenizer.list():
            (staging / file).write_bytes(tokenizer.read_bytes(file))
        (staging / SNAPSHOT_RECORD).write_text(json.dumps({
            "format": SNAPSHOT_FORMAT, "run": run.run_id.key, "model_name": run.run_id.model_name, "seed": run.run_id.seed,
            "init_seed": record.get("init_seed"), "data_seed": record.get("data_seed"),
            "step": step, "tokens_seen": tokens_seen, "config_hash": record["config_hash"],
            "corpus_fingerprint": record["corpus_fingerprint"], "weights_id": weights_id,
            "store": run.store.url,
        }, indent=2))
        _publish(staging, folder, weights_id)
        return folder
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: Path, folder: Path, weights_id: str | None) -> None:
    """Rename the complete staging folder into place. A folder already there built from the same
    weights (another process was first) is kept as it is: it may be open. A stale one is renamed
    aside before it is removed, so that nobody ever finds the place half deleted."""
    try:
        staging.rename(folder)
        return
    except OSError:
        if not folder.exists():
            raise
    record = _record(folder)  # {} when unreadable: a damaged folder, replaced
    if record.get("format") == SNAPSHOT_FORMAT and record.get("weights_id", "") == weights_id:  # the same stored weights, or the same replayed step (weights_id None)
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

    from zoo.models.toy import register_toy_model

    register_toy_model()  # AutoConfig must know "zoo-toy" to rebuild a toy run's config
    hf_config = dict(record["hf_config"])
    model_type = hf_config.pop("model_type")
    config = AutoConfig.for_model(model_type, **hf_config)
    if not config.architectures and model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        config.architectures = [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type]]
    floating = {dtype for dtype in dtypes if dtype.is_floating_point}
    if len(floating) == 1:
        config.dtype = floating.pop()
    return config
