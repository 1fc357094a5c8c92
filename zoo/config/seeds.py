"""Named random streams: every random number in a run comes from a stream named here.

A run's seed expands to an `init_seed` (weights) and a `data_seed` (order). Each stream derives its
generator seed from (stream name, value) by hashing, so streams never share state by accident and
changing one never shifts another.
"""
from __future__ import annotations

import hashlib

STREAMS = ("init", "train")  # weights at step 0; stochastic ops during training (dropout, if any)


def derive_seed(stream: str, value: int) -> int:
    """A 63-bit seed for `stream` from `value`; stable across machines and versions."""
    digest = hashlib.sha256(f"{stream}:{int(value)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
