"""The local cache: prepared corpora, corpora fetched from remote stores, snapshots.

`$ZOO_CACHE` if set, else `~/.cache/zoo`. Everything in it can be rebuilt from a store.
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    root = Path(os.environ.get("ZOO_CACHE") or Path.home() / ".cache" / "zoo")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
