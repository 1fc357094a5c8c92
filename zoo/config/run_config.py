"""Family and run configuration: frozen dataclasses with one root, built from plain data.

A manifest (YAML) becomes a `FamilyConfig`; `FamilyConfig.runs()` expands it into one `RunConfig`
per size x seed. A `RunConfig` is what a run records (`to_json`), hashes (`config_hash`) and
compares on resume (`differences`). Plain data -> dataclasses goes through ONE walker, `from_data`,
driven by the dataclass field types, so every section gets the same checks and the same error
messages (the dotted path of the key, what was expected, what was found) without hand-written
per-field code.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, Union

from zoo_common.errors import ZooError

ARCHITECTURES = ("gpt-neox", "llama", "toy")
ACTIVATIONS = {
    "gpt-neox": ("gelu", "relu", "silu"),
    "llama": ("silu", "gelu"),
    "toy": ("gelu", "solu"),
}
DEFAULT_ACTIVATION = {"gpt-neox": "gelu", "llama": "silu", "toy": "gelu"}
PRECISIONS = ("fp32", "bf16")
SCHEDULES = ("cosine", "constant")
_SIZE_NAME = re.compile(r"^[a-z0-9_.]+$")
_FAMILY_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


def _fail(where: str, message: str) -> ZooError:
    return ZooError(f"{where}: {message}" if where else message)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0][:12]


def _positive(where: str, value: float, *, zero_ok: bool = False) -> None:
    if value < 0 or (value == 0 and not zero_ok):
        raise _fail(where, f"must be {'>= 0' if zero_ok else '> 0'}, got {value}")


@dataclass(frozen=True)
class SizeConfig:
    """One model size of a family; `name` becomes the model name's suffix (`tiny-2l128`)."""

    name: str
    layers: int
    width: int
    heads: int
    mlp_width: int | None = None  # None: 4 x width, as GPT-2 / Pythia
    context: int | None = None  # None: the family's data.seq_len
    activation: str | None = None  # None: the architecture's usual one (gelu; silu for llama)
    attn_only: bool = False  # toy architecture only: attention-only transformer, no MLPs

    def __post_init__(self) -> None:
        where = f"size {self.name!r}"
        if not _SIZE_NAME.match(self.name):
            raise _fail(
                where,
                "a size name must match [a-z0-9_.]+ (e.g. '2l128'); it is part of model names",
            )
        for key in ("layers", "width", "heads"):
            _positive(f"{where}: {key}", getattr(self, key))
        if self.width % self.heads:
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
class DataConfig:
    """The corpus a family trains on, as the data index prepares it."""

    source: str = "builtin:pydoc"
    tokenizer: str | None = (
        None  # a tokenizer folder; None: train a BPE of vocab_size on the source
    )
    vocab_size: int = 2048
    seq_len: int = 64

    def __post_init__(self) -> None:
        _positive("data.vocab_size", self.vocab_size)
        _positive("data.seq_len", self.seq_len)


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


def _check_common(cfg: FamilyConfig | RunConfig, sizes: tuple[SizeConfig, ...]) -> None:
    """Checks shared by a family and a run: values that only make sense together."""
    if cfg.architecture not in ARCHITECTURES:
        raise _fail(
            "architecture",
            f"unknown architecture {cfg.architecture!r}; valid: {', '.join(ARCHITECTURES)}",
        )
    if cfg.precision not in PRECISIONS:
        raise _fail(
            "precision", f"unknown precision {cfg.precision!r}; valid: {', '.join(PRECISIONS)}"
        )
    _positive("batch_size", cfg.batch_size)
    _positive("steps", cfg.steps)
    if cfg.micro_batch_size is not None:
        _positive("micro_batch_size", cfg.micro_batch_size)
        if cfg.batch_size % cfg.micro_batch_size:
            raise _fail(
                "micro_batch_size",
                f"{cfg.micro_batch_size} does not divide batch_size {cfg.batch_size}; "
                f"valid: {_divisors(cfg.batch_size)}",
            )
    valid_acts = ACTIVATIONS[cfg.architecture]
    for size in sizes:
        if size.activation is not None and size.activation not in valid_acts:
            raise _fail(
                f"size {size.name!r}",
                f"activation {size.activation!r} is not available for "
                f"architecture {cfg.architecture}; valid: {', '.join(valid_acts)}",
            )
        if size.attn_only and cfg.architecture != "toy":
            raise _fail(
                f"size {size.name!r}", f"attn_only needs architecture toy, not {cfg.architecture}"
            )
        if size.context is not None and size.context < cfg.data.seq_len:
            raise _fail(
                f"size {size.name!r}",
                f"context {size.context} is shorter than data.seq_len {cfg.data.seq_len}",
            )


def _resolve_size(size: SizeConfig, architecture: str, seq_len: int) -> SizeConfig:
    """Fill defaults that depend on the family (context, activation): runs record real values."""
    return dataclasses.replace(
        size,
        context=size.context if size.context is not None else seq_len,
        activation=size.activation
        if size.activation is not None
        else DEFAULT_ACTIVATION[architecture],
    )


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one run's weights; recorded with the run and hashed."""

    family: str
    architecture: str
    size: SizeConfig
    seed: SeedConfig
    data: DataConfig
    optimizer: OptimizerConfig
    schedule: ScheduleConfig
    batch_size: int
    steps: int
    checkpoints: CheckpointConfig
    precision: str = "fp32"
    # World-size-invariant numerics (zoo.train_step): the gradient is summed over micro-batches of
    # this many samples in a fixed global order, so N processes give the bits of 1. None: off.
    micro_batch_size: int | None = None

    OMITTED_WHEN_NONE: ClassVar[tuple[str, ...]] = ("micro_batch_size",)

    def __post_init__(self) -> None:
        _check_common(self, (self.size,))
        object.__setattr__(
            self, "size", _resolve_size(self.size, self.architecture, self.data.seq_len)
        )

    @property
    def model_name(self) -> str:
        return f"{self.family}-{self.size.name}"

    def to_json(self) -> dict[str, Any]:
        """The resolved config as JSON-safe data (tuples become lists).

        Options added after runs were recorded are left out while unset, so the records and config
        hashes of runs that do not use them stay what they were."""
        data = json.loads(json.dumps(dataclasses.asdict(self)))
        for key in self.OMITTED_WHEN_NONE:
            if data.get(key) is None:
                data.pop(key, None)
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


@dataclass(frozen=True)
class FamilyConfig:
    """The root: one manifest. Sizes x seeds expand into runs that share everything else."""

    family: str
    architecture: str
    sizes: tuple[SizeConfig, ...]
    seeds: tuple[SeedConfig, ...]
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    batch_size: int = 16
    steps: int = 1000
    checkpoints: CheckpointConfig = field(default_factory=CheckpointConfig)
    precision: str = "fp32"
    micro_batch_size: int | None = None  # see RunConfig.micro_batch_size

    def __post_init__(self) -> None:
        if not _FAMILY_NAME.match(self.family):
            raise _fail(
                "family", f"a family name must match [a-z0-9][a-z0-9_.-]*, got {self.family!r}"
            )
        if not self.sizes:
            raise _fail("sizes", "a family needs at least one size")
        if not self.seeds:
            raise _fail("seeds", "a family needs at least one seed")
        _check_common(self, self.sizes)
        _unique("sizes", [s.name for s in self.sizes])
        _unique("seeds", [s.seed for s in self.seeds])
        resolved = tuple(_resolve_size(s, self.architecture, self.data.seq_len) for s in self.sizes)
        object.__setattr__(self, "sizes", resolved)

    def runs(self) -> list[RunConfig]:
        """Every size x seed: sizes in manifest order, seeds in manifest order within a size."""
        return [self._run(size, seed) for size in self.sizes for seed in self.seeds]

    def run(self, size: str, seed: int) -> RunConfig:
        sizes = {s.name: s for s in self.sizes}
        seeds = {s.seed: s for s in self.seeds}
        if size not in sizes:
            raise ZooError(
                f"family {self.family} has no size {size!r}; valid sizes: {', '.join(sizes)}"
            )
        if seed not in seeds:
            raise ZooError(
                f"family {self.family} has no seed {seed!r}; valid seeds: "
                f"{', '.join(str(s) for s in seeds)}"
            )
        return self._run(sizes[size], seeds[seed])

    def _run(self, size: SizeConfig, seed: SeedConfig) -> RunConfig:
        shared = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("sizes", "seeds")
        }
        return RunConfig(size=size, seed=seed, **shared)

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


def _unique(where: str, values: list) -> None:
    seen = set()
    for value in values:
        if value in seen:
            raise _fail(where, f"{value!r} appears more than once; each must be unique")
        seen.add(value)


# ------------------------------------------------------------------ plain data -> dataclass

T = TypeVar("T")
_NUMBER = re.compile(
    r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"
)  # YAML 1.1 reads "1e-3" as a string


def from_data(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass `cls` from plain data (parsed YAML or JSON), checking keys and types.

    Errors are ZooErrors naming the dotted path of the offending key; checks a dataclass makes in
    its own __post_init__ come back prefixed with where that dataclass sits.
    """
    return _convert(cls, data, path)


def _describe(value: Any) -> str:
    return "nothing (null)" if value is None else repr(value)


def _type_name(tp: Any) -> str:
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    names = {
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true or false",
        type(None): "null",
    }
    if tp in names:
        return names[tp]
    origin = typing.get_origin(tp)
    if origin is tuple:
        return "a list"
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return str(tp)


def _convert(tp: Any, value: Any, path: str) -> Any:
    where = path or "manifest"
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        non_null = [o for o in options if o is not type(None)]
        if len(non_null) == 1:
            try:
                return _convert(non_null[0], value, path)
            except ZooError as err:
                if not str(err).startswith(f"{where}: must be {_type_name(non_null[0])}, got"):
                    raise
        raise _fail(where, f"must be {_type_name(tp)}, got {_describe(value)}")
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, value, path)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise _fail(where, f"must be a list, got {_describe(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise _fail(
                where, f"must be a list of {len(args)} items, got {len(value)}: {list(value)}"
            )
        return tuple(_convert(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _NUMBER.match(value.strip()):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"config walker cannot handle type {tp!r} at {where}")  # programming error
    raise _fail(where, f"must be {_type_name(tp)}, got {_describe(value)}")


def _in(path: str) -> str:
    return f" in {path}" if path else ""


def _convert_dataclass(cls: Any, value: Any, path: str) -> Any:
    where = path or "manifest"
    shorthand = getattr(cls, "SHORTHAND", None)
    if shorthand is not None and not isinstance(value, dict):
        value = {shorthand: value}
    if not isinstance(value, dict):
        raise _fail(where, f"must be a mapping, got {_describe(value)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in value:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _fail(
                f"{path}.{key}" if path else str(key),
                f"unknown key{hint}; valid keys{_in(path)}: {', '.join(fields)}",
            )
    kwargs = {}
    for name, f in fields.items():
        sub = f"{path}.{name}" if path else name
        if name in value:
            kwargs[name] = _convert(hints[name], value[name], sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise _fail(sub, "is required")
    try:
        return cls(**kwargs)
    except ZooError as err:
        if not path or str(err).startswith(path):
            raise
        raise ZooError(f"{path}: {err}") from None
