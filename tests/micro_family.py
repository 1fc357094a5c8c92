"""A micro family for tests: one tiny GPT-NeoX, a small slice of the built-in text corpus,
a few dozen steps. Every test that trains uses it, so the whole suite stays in seconds."""
from __future__ import annotations

from pathlib import Path

import yaml

BASE = {
    "family": "micro",
    "architecture": "gpt-neox",
    "sizes": [{"name": "1l32", "layers": 1, "width": 32, "heads": 2, "mlp_width": 64}],
    "seeds": [1, 2],
    "data": {"source": "builtin:pydoc?max_docs=150", "vocab_size": 512, "seq_len": 32},
    "optimizer": {"lr": 3e-3, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1, "clip": 1.0},
    "schedule": {"kind": "cosine", "warmup_steps": 4, "min_lr_ratio": 0.1},
    "batch_size": 8,
    "steps": 24,
    "checkpoints": {"log_spaced_until": 4, "every": 6, "keyframe_every": 8},
}


def write_manifest(folder: Path, name: str = "micro.yaml", **overrides) -> str:
    doc = {**BASE, **overrides}
    path = Path(folder) / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


# The grokking family in miniature: modular addition mod 11, half the pairs train, full batch.
GROKKING = {
    "family": "gmicro",
    "architecture": "toy",
    "sizes": [{"name": "1l32", "layers": 1, "width": 32, "heads": 4, "mlp_width": 64,
               "activation": "relu", "layer_norm": False, "init_std": 0.1}],
    "seeds": [1, 2],
    "data": {"source": "builtin:modular?p=11&train_fraction=0.5", "seq_len": 4},
    "optimizer": {"lr": 3e-3, "betas": [0.9, 0.98], "weight_decay": 1.0, "clip": 0},
    "schedule": {"kind": "constant", "warmup_steps": 2},
    "batch_size": 60,  # round(0.5 * 121): the whole train split
    "steps": 20,
    "checkpoints": {"log_spaced_until": 4, "every": 5, "keyframe_every": 10},
}


def write_grokking_manifest(folder: Path, name: str = "gmicro.yaml", **overrides) -> str:
    path = Path(folder) / name
    path.write_text(yaml.safe_dump({**GROKKING, **overrides}, sort_keys=False))
    return str(path)
