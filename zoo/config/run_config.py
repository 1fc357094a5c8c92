"""Family and run configuration: frozen dataclasses with one root, built from plain data.

A manifest (YAML) becomes a `FamilyConfig`; `FamilyConfig.runs()` expands it into one `RunConfig`
per size x seed. Both are the `TrainingSettings` a family's runs share plus, for the family, the
sizes and seeds, for a run, its one size and seed. A `RunConfig` is what a run records (`to_json`),
hashes (`config_hash`) and compares on resume (`differences`).

Plain data -> these dataclasses goes through one walker, `from_data` (zoo/config/plain_data.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from zoo.config.plain_data import from_data
from zoo_common.errors import ArgumentError, ManifestError

ARCHITECTURES = ("gpt-neox", "llama", "toy", "superposition")
TRANSFORMERS = ("gpt-neox", "llama", "toy")  # the architectures with layers and heads
ACTIVATIONS = {
    "gpt-neox": ("gelu", "relu", "silu"),
    "llama": ("silu", "gelu"),
    "toy": ("gelu", "relu", "solu"),
    "superposition": ("relu",),  # the ReLU output model (zoo/models/superposition.py)
}
DEFAULT_ACTIVATION = {"gpt-neox": "gelu", "llama": "silu", "toy": "gelu", "superposition": "relu"}
PRECISIONS = ("fp32", "bf16")
FULL_BATCH = "full"  # batch_size: the whole train split, resolved against the corpus at training
SCHEDULES = ("cosine", "constant")
_SIZE_NAME = re.compile(r"^[a-z0-9_.]+$")
_FAMILY_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


def _fail(where: str, message: str) -> ManifestError:
    return ManifestError(f"{where}: {message}" if where else message)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0][:12]


def _positive(where: str, value: float, *, zero_ok: bool = False) -> None:
    if value < 0 or (value == 0 and not zero_ok):
        raise _fail(where, f"must be {'>= 0' if zero_ok else '> 0'}, got {value}")


@dataclass(frozen=True)
class SizeConfig:
    """One model size of a family; `name` becomes the model name's suffix (`tiny-2l128`).

    For the superposition architecture `width` is the hidden size m (the features n come from the
    data) and there are no layers or heads; `source` gives a size data of its own (one sparsity
    per size), in place of the family's data.source."""

    name: str
    layers: int | None = None  # required by the transformer architectures
    width: int | None = None  # required (a default only so that layers may be left out)
    heads: int | None = None  # required by the transformer architectures
    mlp_width: int | None = None  # None: 4 x width, as GPT-2 / Pythia
    context: int | None = None  # None: the family's data.seq_len
    activation: str | None = None  # None: the architecture's usual one (gelu; silu for llama)
    attn_only: bool = False  # toy architecture only: attention-only transformer, no MLPs
    layer_norm: bool = True  # toy architecture only: false = no LayerNorm anywhere (grokking)
    init_std: float | None = None  # std of the initial weights; None: 0.02 (GPT-2's, Pythia's)
    source: str | None = None  # this size's data source, when not the family's
    architecture: str | None = None  # this size's architecture, when not the family's (a
    # production-style llama size beside toy ones, on the same data)
    steps: int | None = None  # this size's training length, when not the family's (a size whose
    # phenomenon comes later trains longer; the others keep their runs)

    def __post_init__(self) -> None:
        where = f"size {self.name!r}"
        if not _SIZE_NAME.match(self.name):
            raise _fail(
                where,
                "a size name must match [a-z0-9_.]+ (e.g. '2l128'); it is part of model names",
            )
        if self.width is None:
            raise _fail(f"{where}: width", "is required")
        for key in ("layers", "width", "heads"):
            if getattr(self, key) is not None:
                _positive(f"{where}: {key}", getattr(self, key))
        if self.heads is not None and self.width % self.heads:
            raise _fail(
                where,
                f"width {self.width} is not divisible by heads {self.heads} "
                f"(head counts that divide it: {_divisors(self.width)})",
            )
        if self.mlp_width is None:
            object.__setattr__(self, "mlp_width", 4 * self.width)
        _positive(f"{where}: mlp_width", self.mlp_width)
        if self.context is not None:
            _positive(f"{where}: context", self.context)
        if self.init_std is not None:
            _positive(f"{where}: init_std", self.init_std)


@dataclass(frozen=True)
class SeedConfig:
    """A run's identity; expands to the seed of the weights and the seed of the data order."""

    SHORTHAND: ClassVar[str] = "seed"  # a bare integer in a manifest means {seed: N}

    seed: int
    init_seed: int | None = None  # None: = seed
    data_seed: int | None = None  # None: = seed

    def __post_init__(self) -> None:
        for key in ("seed", "init_seed", "data_seed"):
            value = getattr(self, key)
            if value is not None and value < 0:
                raise _fail(f"seed {self.seed}: {key}", f"must be >= 0, got {value}")
        if self.init_seed is None:
            object.__setattr__(self, "init_seed", self.seed)
        if self.data_seed is None:
            object.__setattr__(self, "data_seed", self.seed)


@dataclass(frozen=True)
class SourceWeight:
    """One part of a mixed corpus: a source string and its share (any positive number)."""

    source: str
    weight: float

    def __post_init__(self) -> None:
        _positive("weight", self.weight)


DEFAULT_SOURCE = "builtin:pydoc"


@dataclass(frozen=True)
class DataConfig:
    """The corpus a family trains on, as the data index prepares it: one `source`, or a
    deterministic weighted mix of text sources (`sources`, data_index/mixing.py)."""

    source: str = DEFAULT_SOURCE
    tokenizer: str | None = (
        None  # a tokenizer folder; None: train a BPE of vocab_size on the source
    )
    vocab_size: int = 2048
    seq_len: int = 64
    sources: tuple[SourceWeight, ...] | None = None

    def __post_init__(self) -> None:
        _positive("data.vocab_size", self.vocab_size)
        _positive("data.seq_len", self.seq_len)
        if self.sources is not None:
            if not self.sources:
                raise _fail("data.sources", "a mix needs at least one {source, weight}")
            if self.source != DEFAULT_SOURCE:
                raise _fail("data.sources", "give data.source (one corpus) or data.sources (a mix), not both")

    @property
    def source_spec(self) -> str:
        """The source string the data index prepares: `source`, or the mix of `sources`."""
        if self.sources is None:
            return self.source
        from data_index.mixing import mix_spec

        return mix_spec([(part.source, part.weight) for part in self.sources])


@dataclass(frozen=True)
class OptimizerConfig:
    """AdamW hyper-parameters and gradient clipping (clip <= 0 disables it)."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1
    clip: float = 1.0

    def __post_init__(self) -> None:
        _positive("optimizer.lr", self.lr)
        _positive("optimizer.eps", self.eps)
        _positive("optimizer.weight_decay", self.weight_decay, zero_ok=True)
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise _fail("optimizer.betas", f"each beta must be in [0, 1), got {list(self.betas)}")


@dataclass(frozen=True)
class ScheduleConfig:
    """LR schedule: linear warmup, then cosine decay to min_lr_ratio x lr, or constant."""

    kind: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise _fail(
                "schedule.kind", f"unknown schedule {self.kind!r}; valid: {', '.join(SCHEDULES)}"
            )
        _positive("schedule.warmup_steps", self.warmup_steps, zero_ok=True)
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise _fail("schedule.min_lr_ratio", f"must be in [0, 1], got {self.min_lr_ratio}")


@dataclass(frozen=True)
class CheckpointConfig:
    """Which steps keep weights (log-spaced, then every N) and full keyframes (every K)."""

    log_spaced_until: int = 512
    every: int = 1000
    keyframe_every: int = 1000

    def __post_init__(self) -> None:
        _positive("checkpoints.log_spaced_until", self.log_spaced_until, zero_ok=True)
        _positive("checkpoints.every", self.every)
        _positive("checkpoints.keyframe_every", self.keyframe_every)


@dataclass(frozen=True, kw_only=True)
class TrainingSettings:
    """What every run of a family shares: all of a run's config but its size and its seed.

    Declared once here; `FamilyConfig` adds the sizes and seeds to expand, `RunConfig` the one size
    and seed it was expanded with."""

    family: str
    architecture: str
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    batch_size: int | str = 16  # or "full": the whole train split, whatever its size (full batch)
    steps: int = 1000
    checkpoints: CheckpointConfig = field(default_factory=CheckpointConfig)
    precision: str = "fp32"
    # World-size-invariant numerics (zoo.engine.train_step): the gradient is summed over micro-batches of
    # this many samples in a fixed global order, so N processes give the bits of 1. None: off.
    micro_batch_size: int | None = None

    # Keys that lead in records and messages, as before the shared fields moved into this base
    # class (a subclass's own fields come after the inherited ones)
    LEADING_KEYS: ClassVar[tuple[str, ...]] = ()

    def _check(self, sizes: tuple[SizeConfig, ...]) -> None:
        """Checks of values that only make sense together (settings and sizes)."""
        if self.architecture not in ARCHITECTURES:
            raise _fail(
                "architecture",
                f"unknown architecture {self.architecture!r}; valid: {', '.join(ARCHITECTURES)}",
            )
        if self.precision not in PRECISIONS:
            raise _fail(
                "precision",
                f"unknown precision {self.precision!r}; valid: {', '.join(PRECISIONS)}",
            )
        if isinstance(self.batch_size, str):
            if self.batch_size != FULL_BATCH:
                raise _fail("batch_size", f"a number of samples, or {FULL_BATCH!r} (the whole "
                                          f"train split), got {self.batch_size!r}")
        else:
            _positive("batch_size", self.batch_size)
        _positive("steps", self.steps)
        if self.micro_batch_size is not None:
            _positive("micro_batch_size", self.micro_batch_size)
            if self.batch_size != FULL_BATCH and self.batch_size % self.micro_batch_size:
                raise _fail(
                    "micro_batch_size",
                    f"{self.micro_batch_size} does not divide batch_size {self.batch_size}; "
                    f"valid: {_divisors(self.batch_size)}",
                )
        for size in sizes:
            where = f"size {size.name!r}"
            architecture = size.architecture or self.architecture
            if architecture not in ARCHITECTURES:
                raise _fail(f"{where}: architecture", f"unknown architecture {architecture!r}; "
                                                     f"valid: {', '.join(ARCHITECTURES)}")
            if (architecture == "superposition") != (self.architecture == "superposition"):
                raise _fail(f"{where}: architecture", "the superposition model and the "
                                                     "transformers read different data: one family "
                                                     "holds one kind")
            self._check_shape(size, where, architecture)
            if size.steps is not None:
                _positive(f"{where}: steps", size.steps)
            valid_acts = ACTIVATIONS[architecture]
            if size.activation is not None and size.activation not in valid_acts:
                raise _fail(
                    where,
                    f"activation {size.activation!r} is not available for "
                    f"architecture {architecture}; valid: {', '.join(valid_acts)}",
                )
            if size.attn_only and architecture != "toy":
                raise _fail(where, f"attn_only needs architecture toy, not {architecture}")
            if not size.layer_norm and architecture != "toy":
                raise _fail(where, f"layer_norm: false needs architecture toy, not {architecture}")
            if size.context is not None and size.context < self.data.seq_len:
                raise _fail(
                    where,
                    f"context {size.context} is shorter than data.seq_len {self.data.seq_len}",
                )

    def _check_shape(self, size: SizeConfig, where: str, architecture: str) -> None:
        """Layers and heads: what a transformer needs and the superposition model has none of."""
        if architecture in TRANSFORMERS:
            for key in ("layers", "heads"):
                if getattr(size, key) is None:
                    raise _fail(f"{where}: {key}", f"is required for architecture {architecture}")
            return
        for key in ("layers", "heads"):
            if getattr(size, key) not in (None, 1):
                raise _fail(f"{where}: {key}", f"the {architecture} model has no {key}; "
                                                f"leave it out")
        source = size.source or self.data.source
        if not source.startswith("builtin:sparse_features"):
            raise _fail(f"{where}: source" if size.source else "data.source",
                        f"the superposition model trains on builtin:sparse_features?n=..&sparsity=.."
                        f"&importance=.., got {source!r}")
        from data_index.features import FeatureRecipe  # the data's own checks, naming the field

        try:
            recipe = FeatureRecipe.parse(source)
        except ValueError as exc:
            raise _fail(f"{where}: source" if size.source else "data.source", str(exc)) from None
        if size.width > recipe.n:
            raise _fail(f"{where}: width", f"a hidden size of {size.width} for {recipe.n} features "
                                           f"leaves nothing to superpose (use width <= {recipe.n})")

    def _resolved(self, size: SizeConfig) -> SizeConfig:
        """Fill the size defaults that depend on these settings: runs record real values."""
        return dataclasses.replace(
            size,
            context=size.context if size.context is not None else self.data.seq_len,
            activation=size.activation
            if size.activation is not None
            else DEFAULT_ACTIVATION[size.architecture or self.architecture],
        )

    def _json(self) -> dict[str, Any]:
        """JSON-safe data (tuples become lists), in the order of `LEADING_KEYS` first."""
        data = json.loads(json.dumps(dataclasses.asdict(self)))
        return {key: data[key] for key in self.LEADING_KEYS} | data


@dataclass(frozen=True, kw_only=True)
class RunConfig(TrainingSettings):
    """Everything that determines one run's weights; recorded with the run and hashed."""

    size: SizeConfig
    seed: SeedConfig
    # A branch that masks samples (the attribution check's counterfactual): in steps up to
    # masked_until (None: every step) these samples stay in their batches with no loss, so each
    # step trains on the same batch without them (zoo.engine.training_state.training_batch).
    masked_samples: tuple[int, ...] = ()
    masked_until: int | None = None

    # A record is complete, so reading one requires every key but these, options added after runs
    # were recorded (the family defaults of the others are no stand-in for a damaged record).
    OPTIONAL_KEYS: ClassVar[tuple[str, ...]] = ("precision", "micro_batch_size", "masked_samples",
                                                "masked_until")
    LEADING_KEYS: ClassVar[tuple[str, ...]] = ("family", "architecture", "size", "seed")
    # Options added after runs were recorded, left out of records while they hold their default
    # (dotted path -> default), so older runs' records and config hashes stay what they were.
    OMITTED_AT_DEFAULT: ClassVar[dict[str, Any]] = {
        "micro_batch_size": None, "size.layer_norm": True, "size.init_std": None, "data.sources": None,
        "size.source": None, "size.architecture": None, "size.steps": None,
        "masked_samples": [], "masked_until": None}

    def __post_init__(self) -> None:
        self._check((self.size,))
        object.__setattr__(self, "size", self._resolved(self.size))

    @property
    def model_name(self) -> str:
        return f"{self.family}-{self.size.name}"

    def masked_at(self, step: int) -> frozenset[int]:
        """The samples that train with no loss at `step` (empty for every run but such a branch)."""
        if not self.masked_samples or (self.masked_until is not None and step > self.masked_until):
            return frozenset()
        return frozenset(self.masked_samples)

    def to_json(self) -> dict[str, Any]:
        """The resolved config as JSON-safe data (tuples become lists).

        Options added after runs were recorded are left out while unset, so the records and config
        hashes of runs that do not use them stay what they were."""
        data = self._json()
        for dotted, default in self.OMITTED_AT_DEFAULT.items():
            *parents, key = dotted.split(".")
            section = data
            for parent in parents:
                section = section.get(parent, {})
            if key in section and section[key] == default:
                del section[key]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunConfig:
        return from_data(cls, data)

    def config_hash(self) -> str:
        """sha256 of the canonical JSON: equal hashes <=> equal configs."""
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def differences(self, other: RunConfig) -> list[str]:
        """Dotted paths of the fields that differ, e.g. ["optimizer.lr"]."""
        return _diff(self.to_json(), other.to_json(), "")


def _diff(a: Any, b: Any, prefix: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += _diff(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
        return out
    return [] if a == b else [prefix]


@dataclass(frozen=True, kw_only=True)
class FamilyConfig(TrainingSettings):
    """The root: one manifest. Sizes x seeds expand into runs that share everything else."""

    sizes: tuple[SizeConfig, ...]
    seeds: tuple[SeedConfig, ...]

    LEADING_KEYS: ClassVar[tuple[str, ...]] = ("family", "architecture", "sizes", "seeds")

    def __post_init__(self) -> None:
        if not _FAMILY_NAME.match(self.family):
            raise _fail(
                "family", f"a family name must match [a-z0-9][a-z0-9_.-]*, got {self.family!r}"
            )
        if not self.sizes:
            raise _fail("sizes", "a family needs at least one size")
        if not self.seeds:
            raise _fail("seeds", "a family needs at least one seed")
        self._check(self.sizes)
        _unique("sizes", [s.name for s in self.sizes])
        _unique("seeds", [s.seed for s in self.seeds])
        object.__setattr__(self, "sizes", tuple(self._resolved(s) for s in self.sizes))

    def runs(self) -> list[RunConfig]:
        """Every size x seed: sizes in manifest order, seeds in manifest order within a size."""
        return [self._run(size, seed) for size in self.sizes for seed in self.seeds]

    def run(self, size: str, seed: int) -> RunConfig:
        sizes = {s.name: s for s in self.sizes}
        seeds = {s.seed: s for s in self.seeds}
        if size not in sizes:
            raise ArgumentError(
                f"family {self.family} has no size {size!r}; valid sizes: {', '.join(sizes)}"
            )
        if seed not in seeds:
            raise ArgumentError(
                f"family {self.family} has no seed {seed!r}; valid seeds: "
                f"{', '.join(str(s) for s in seeds)}"
            )
        return self._run(sizes[size], seeds[seed])

    def _run(self, size: SizeConfig, seed: SeedConfig) -> RunConfig:
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainingSettings)}
        if size.source is not None:  # a size with data of its own
            shared["data"] = dataclasses.replace(self.data, source=size.source, sources=None)
        if size.architecture is not None:  # a size with an architecture of its own
            shared["architecture"] = size.architecture
        if size.steps is not None:  # a size that trains longer (or shorter) than the family
            shared["steps"] = size.steps
        return RunConfig(size=size, seed=seed, **shared)

    def to_json(self) -> dict[str, Any]:
        return self._json()


def _unique(where: str, values: list) -> None:
    seen = set()
    for value in values:
        if value in seen:
            raise _fail(where, f"{value!r} appears more than once; each must be unique")
        seen.add(value)


# ------------------------------------------------------------------ plain data -> dataclass

# YAML 1.1 reads 1e-3 as a string, so a float field accepts a number spelled as one
