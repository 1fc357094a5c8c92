"""Synthetic sparse features: the data of the superposition family, drawn afresh for every step.

    builtin:sparse_features?n=20&sparsity=0.9&importance=0.7

Each sample is a vector of `n` features; each feature is 0 with probability `sparsity`, else
uniform on [0, 1) (Elhage et al. 2022, "Toy Models of Superposition"). Feature i carries the
importance `importance**i` (1: all alike), which the model's loss weighs it by. The truth of a
model trained on it is known: the features are the input basis.

Nothing is stored but the recipe. Sample k of a run is a pure function of (the run's data seed,
k): the counter-based generator of order.py (never numpy's Generator streams, whose bits may
change between numpy versions) gives 2n 64-bit words per sample, one to decide whether each
feature is on, one for its value (24 bits: a float32 uniform on [0, 1), exactly). Step s trains on
samples (s-1)*B .. s*B-1, so replay draws its batch again and the data index stays one row per
step (`DRAWN` in its header). No sample is ever seen twice, so "which steps saw sample k" has no
answer worth an index: steps_of says so.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np

from data_index.order import random_uint64, stream_key
from zoo_common.errors import IntegrityError, InvalidInputError

SOURCE_NAME = "sparse_features"
PREFIX = f"builtin:{SOURCE_NAME}"
KIND = "drawn_features"  # corpus.json's kind
RULE = "sparse_features/1: per sample 2n splitmix64 words; on = word_a >= sparsity*2^64; value = top 24 bits of word_b / 2^24"
DRAWN_SAMPLES = 1 << 62  # an endless stream: the index's n_samples for drawn data
_STREAM = 0x5FEA7  # the named stream "sparse features" in stream_key
_DEFAULTS = {"n": 20, "sparsity": 0.9, "importance": 0.7}


def is_feature_source(source: str) -> bool:
    return source == PREFIX or source.startswith(PREFIX + "?")


@dataclass(frozen=True)
class FeatureRecipe:
    """What a drawn feature corpus is: everything that decides the values a run trains on."""

    n: int
    sparsity: float
    importance: float

    @classmethod
    def parse(cls, source: str) -> FeatureRecipe:
        """`builtin:sparse_features?n=..&sparsity=..&importance=..`, checked field by field."""
        if not is_feature_source(source):
            raise InvalidInputError(f"{source!r} is not a {PREFIX}?... source")
        params = dict(_DEFAULTS)
        for key, value in parse_qsl(source.partition("?")[2], keep_blank_values=True):
            if key not in _DEFAULTS:
                raise InvalidInputError(f"{PREFIX} has no parameter {key!r}; valid: "
                                        f"{', '.join(_DEFAULTS)}")
            kind = type(_DEFAULTS[key])
            try:
                params[key] = kind(value)
            except ValueError:
                what = "a whole number" if kind is int else "a number"
                raise InvalidInputError(f"{PREFIX} parameter {key} must be {what}, got {value!r}") from None
        recipe = cls(**params)
        recipe.check()
        return recipe

    def check(self) -> None:
        if self.n < 1:
            raise InvalidInputError(f"{PREFIX} parameter n (features) must be >= 1, got {self.n}")
        if not 0.0 <= self.sparsity < 1.0:
            raise InvalidInputError(f"{PREFIX} parameter sparsity (the probability that a feature "
                                    f"is 0) must be in [0, 1), got {self.sparsity}")
        if not self.importance > 0.0:
            raise InvalidInputError(f"{PREFIX} parameter importance (feature i weighs "
                                    f"importance**i) must be > 0, got {self.importance}")

    @property
    def source(self) -> str:
        """The canonical source string (parameters in a fixed order)."""
        return f"{PREFIX}?n={self.n}&sparsity={self.sparsity!r}&importance={self.importance!r}"

    def importance_vector(self) -> np.ndarray:
        """I_i = importance**i, float32 [n] (the loss's weights)."""
        return np.float32(self.importance) ** np.arange(self.n, dtype=np.float32)

    def fingerprint(self) -> str:
        canonical = json.dumps({"recipe": asdict(self), "rule": RULE}, sort_keys=True)
        return "features-" + hashlib.sha256(canonical.encode()).hexdigest()[:40]

    def draw(self, sample_ids: np.ndarray, *, data_seed: int) -> np.ndarray:
        """The samples `sample_ids` of a run with `data_seed`: float32 [len(ids), n]."""
        ids = np.asarray(sample_ids, dtype=np.int64).reshape(-1)
        if ids.size == 0:
            return np.zeros((0, self.n), dtype=np.float32)
        if ids.min() < 0:
            raise InvalidInputError(f"sample ids of drawn features are >= 0, got {int(ids.min())}")
        key = stream_key(_STREAM, int(data_seed))
        words = 2 * self.n
        if np.all(np.diff(ids) == 1):  # a step's batch: one contiguous stretch of the stream
            bits = random_uint64(key, ids.size * words, start=int(ids[0]) * words)
        else:
            bits = np.concatenate([random_uint64(key, words, start=int(i) * words) for i in ids])
        bits = bits.reshape(ids.size, self.n, 2)
        threshold = np.uint64(min(int(self.sparsity * 2.0**64), (1 << 64) - 1))
        on = bits[:, :, 0] >= threshold
        values = (bits[:, :, 1] >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)
        return np.where(on, values, np.float32(0.0)).astype(np.float32)


def drawn_batch(step: int, batch_size: int) -> np.ndarray:
    """The sample ids step `step` (>= 1) trains on: (step-1)*B .. step*B-1."""
    first = (int(step) - 1) * int(batch_size)
    return np.arange(first, first + int(batch_size), dtype=np.int64)


class FeatureCorpus:
    """A prepared drawn-features corpus: only its recipe, in corpus.json. It answers what the
    training loop, replay and the registry ask of a corpus; its samples need the run's data seed."""

    drawn = True
    vocab_size = 0  # no tokens
    eos_id = None
    train_fraction = None
    tokenizer_dir = None
    n_samples = DRAWN_SAMPLES

    def __init__(self, folder: Path, meta: dict):
        self.folder = Path(folder)
        self.meta = meta
        self.fingerprint: str = meta["fingerprint"]
        self.recipe = FeatureRecipe(**meta["recipe"])
        self.n_features = self.recipe.n
        self.seq_len = self.recipe.n  # a sample's length, as a text corpus's

    @classmethod
    def open(cls, folder: str | Path, meta: dict) -> FeatureCorpus:
        corpus = cls(Path(folder), meta)
        corpus.verify()
        return corpus

    def samples(self, ids, *, data_seed: int) -> np.ndarray:
        return self.recipe.draw(ids, data_seed=data_seed)

    def loss_mask(self, ids) -> None:
        return None

    def train_ids(self, data_seed: int):
        raise InvalidInputError(f"{self.recipe.source} is drawn afresh for every step: it has no "
                                f"train split to list")

    def files(self) -> list[str]:
        return ["corpus.json"]

    def verify(self) -> None:
        if self.recipe.fingerprint() != self.fingerprint:
            raise IntegrityError(f"drawn-features corpus {self.folder}: its recipe gives fingerprint "
                                 f"{self.recipe.fingerprint()}, corpus.json records {self.fingerprint}")

    def __repr__(self) -> str:
        return f"FeatureCorpus({self.recipe.source!r})"


def prepare_features(source: str, out: str | Path) -> FeatureCorpus:
    """Write the corpus folder of a feature source (its corpus.json: the recipe and fingerprint),
    atomically; an existing folder of the same recipe is reused."""
    recipe = FeatureRecipe.parse(source)
    out = Path(out).expanduser().resolve()
    meta = {"format": "zoo-corpus", "version": 1, "kind": KIND, "source": recipe.source,
            "recipe": asdict(recipe), "rule": RULE, "fingerprint": recipe.fingerprint(),
            "files": {}}
    if (out / "corpus.json").exists():
        existing = json.loads((out / "corpus.json").read_text())
        if existing.get("fingerprint") != meta["fingerprint"]:
            raise InvalidInputError(f"{out} already holds another corpus ({existing.get('source')!r})")
        return FeatureCorpus.open(out, existing)
    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".corpus.json.{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.write_text(json.dumps(meta, indent=2))
    os.replace(staging, out / "corpus.json")
    return FeatureCorpus.open(out, meta)
