"""A toy snapshot in its stock form (zoo/models/stock_forms.py: a GELU, ReLU or attention-only toy
model as GPT2LMHeadModel), a plain Hugging Face folder that needs no remote code.

Built from the toy snapshot beside it and cached as `step-N.gpt2`; its record names the toy
snapshot's source (snapshot_folder.py), so it is rebuilt whenever that one would be. A stock
architecture's snapshot (GPT-NeoX, Llama) is its own stock form.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from safetensors.torch import load_file, save_file

from zoo.registry.snapshot_folder import PT_METADATA, SNAPSHOT_RECORD, WEIGHTS, source_id

FORM = "gpt2"
_NOT_WEIGHTS = ("config.json", WEIGHTS, SNAPSHOT_RECORD)


def stock_snapshot(folder: Path) -> Path:
    """The stock form of the snapshot `folder` (the folder itself when it is stock already)."""
    from transformers import AutoConfig

    from zoo.models.own_types import register_own_models
    from zoo.models.stock_forms import gpt2_config, gpt2_tensors

    record = json.loads((folder / SNAPSHOT_RECORD).read_text())
    if json.loads((folder / "config.json").read_text()).get("model_type") != "zoo-toy":
        return folder
    target = folder.with_name(f"{folder.name}.{FORM}")
    built_from = {**record["source"], "form": FORM}
    if _record_of(target).get("source_id") == source_id(built_from):
        return target
    register_own_models()
    config = AutoConfig.from_pretrained(folder)
    stock = gpt2_config(config)
    tensors = gpt2_tensors(config, load_file(folder / WEIGHTS))
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=folder.parent))
    try:
        save_file(tensors, staging / WEIGHTS, metadata=PT_METADATA)
        stock.save_pretrained(staging)
        for file in folder.iterdir():  # the tokenizer files
            if file.is_file() and file.name not in _NOT_WEIGHTS and not file.name.endswith(".py"):
                shutil.copyfile(file, staging / file.name)
        (staging / SNAPSHOT_RECORD).write_text(json.dumps(
            {**record, "form": FORM, "source": built_from, "source_id": source_id(built_from)},
            indent=2))
        if target.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".stale", dir=folder.parent))
            target.rename(aside / "old")
            shutil.rmtree(aside, ignore_errors=True)
        staging.rename(target)
    except OSError:
        if _record_of(target).get("source_id") != source_id(built_from):
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _record_of(folder: Path) -> dict:
    try:
        return json.loads((folder / SNAPSHOT_RECORD).read_text())
    except (OSError, ValueError):
        return {}
