"""Run names, built and parsed in one place.

A model name is `<family>-<size>` (`tiny-2l128`); a run adds the seed (`tiny-2l128/seed-1`). The
family may contain '-', the size never does, so a model name is split on its LAST '-'. Names become
folder names in a store, so they are checked against strict patterns: `../x`, slashes, upper case or
spaces are refused with an error that states the rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from zoo_common.arguments import whole_number
from zoo_common.errors import ZooError

FAMILY_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]*")
SIZE_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.]*")
_RUN_KEY = re.compile(r"(?P<name>[^/]+)/seed-(?P<seed>\d+)")
_FAMILY_RULE = "lower-case letters, digits, '_', '.', '-', starting with a letter or digit"
_SIZE_RULE = "lower-case letters, digits, '_', '.', starting with a letter or digit (no '-')"


def check_family(family: str) -> str:
    if not isinstance(family, str) or not FAMILY_PATTERN.fullmatch(family):
        raise ZooError(f"invalid family {family!r}: use {_FAMILY_RULE}")
    return family


def check_size(size: str) -> str:
    if not isinstance(size, str) or not SIZE_PATTERN.fullmatch(size):
        raise ZooError(f"invalid size {size!r}: use {_SIZE_RULE}")
    return size


def check_seed(seed: int) -> int:
    """A seed as a Python int (numpy integers too: seeds often come from arrays)."""
    try:
        return whole_number(seed, "seed", minimum=0)
    except ZooError:
        raise ZooError(f"invalid seed {seed!r}: a seed is a non-negative integer") from None


def parse_model_name(name: str) -> tuple[str, str]:
    """`"tiny-2l128"` -> `("tiny", "2l128")`; `"my-fam-4l256"` -> `("my-fam", "4l256")`."""
    if not isinstance(name, str) or "-" not in name:
        raise ZooError(f"invalid model name {name!r}: expected <family>-<size>, e.g. tiny-2l128")
    family, size = name.rsplit("-", 1)
    return check_family(family), check_size(size)


def natural_key(text: str) -> tuple:
    """Sorts digit runs as numbers: "2l64" before "2l128"."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


@dataclass(frozen=True, order=True)
class RunId:
    """One run: a model (family + size) and a seed. Orders by family, size, then seed as an int."""

    family: str
    size: str
    seed: int

    def __post_init__(self) -> None:
        check_family(self.family)
        check_size(self.size)
        check_seed(self.seed)

    @property
    def model_name(self) -> str:
        return f"{self.family}-{self.size}"

    @property
    def sort_key(self) -> tuple:
        """Family, then size in natural order (1l64, 2l64, 2l128), then seed."""
        return natural_key(self.family), natural_key(self.size), self.seed

    @property
    def key(self) -> str:
        return f"{self.model_name}/seed-{self.seed}"

    def __str__(self) -> str:
        return f"{self.model_name} seed {self.seed}"

    @classmethod
    def from_name(cls, name: str, seed: int) -> RunId:
        family, size = parse_model_name(name)
        return cls(family, size, check_seed(seed))

    @classmethod
    def parse(cls, key: str) -> RunId:
        """Inverse of `.key`: `"tiny-2l128/seed-1"` -> RunId("tiny", "2l128", 1)."""
        match = _RUN_KEY.fullmatch(key) if isinstance(key, str) else None
        if not match:
            raise ZooError(
                f"invalid run {key!r}: expected <family>-<size>/seed-<N>, e.g. tiny-2l128/seed-1"
            )
        return cls.from_name(match["name"], int(match["seed"]))
