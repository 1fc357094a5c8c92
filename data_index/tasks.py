"""Algorithmic tasks as corpora: fixed-length samples over a symbolic vocabulary, a loss mask, a split.

A task is not text: `builtin:modular?p=113&train_fraction=0.3&op=add` is every pair (a, b) as the
four tokens `a b = c` with c = (a op b) mod p, one token per number and one for "=", no BPE (a
tokenizer merging digits would hand the model a different task). The loss is on the answer only
(the loss mask marks c), and the pairs are split into train and test by the run's data seed
(data_index.splits), because grokking is generalisation to pairs never trained on (Power et al.
2022; Nanda et al. 2023). Sample i is the pair (a, b) = divmod(i, p): ids mean the same thing in
every corpus of the same p, and a document is one pair ("modular:p113:add:a,b").
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from data_index.splits import check_train_fraction
from zoo_common.errors import ZooError

EQUALS = "="
EOS_TOKEN = "<|endoftext|>"

# name -> (symbol in messages, c as a function of numpy arrays a, b and the modulus)
OPERATIONS: dict[str, tuple[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]]] = {
    "add": ("+", lambda a, b, p: (a + b) % p),
    "sub": ("-", lambda a, b, p: (a - b) % p),
    "mul": ("*", lambda a, b, p: (a * b) % p),
}


@dataclass(frozen=True)
class TaskSamples:
    """What a task corpus holds, built in memory (tasks are small: p * p samples)."""

    spec: str  # the canonical source string
    vocabulary: list[str]  # token strings; a token's id is its index
    eos_token: str
    tokens: np.ndarray  # int64 [n_samples, seq_len]
    loss_mask: np.ndarray  # bool [n_samples, seq_len]: True where the token is a loss target
    document_ids: list[str]
    train_fraction: float
    metadata: dict = field(default_factory=dict)


def modular(spec: str, *, p: int, train_fraction: float, op: str) -> TaskSamples:
    """Every pair (a, b) of 0..p-1 as `a b = c`, the loss on c."""
    if p < 2:
        raise ZooError(f"builtin:modular parameter p must be >= 2 (the modulus, e.g. 113), got {p}")
    check_train_fraction(train_fraction, "builtin:modular parameter train_fraction")
    if op not in OPERATIONS:
        raise ZooError(f"builtin:modular parameter op: unknown operation {op!r}; valid: {', '.join(OPERATIONS)}")
    symbol, compute = OPERATIONS[op]
    a, b = np.divmod(np.arange(p * p, dtype=np.int64), p)
    equals = np.full_like(a, p)
    tokens = np.stack([a, b, equals, compute(a, b, p)], axis=1)
    mask = np.zeros(tokens.shape, dtype=bool)
    mask[:, 3] = True
    vocabulary = [str(i) for i in range(p)] + [EQUALS, EOS_TOKEN]
    ids = [f"modular:p{p}:{op}:{x},{y}" for x, y in zip(a.tolist(), b.tolist())]
    meta = {"generator": "modular", "p": p, "op": op, "operation": f"(a {symbol} b) mod {p}",
            "layout": "a b = c"}
    return TaskSamples(spec, vocabulary, EOS_TOKEN, tokens, mask, ids, train_fraction, meta)
