"""Run names, built and parsed in one place.

A model name is `<family>-<size>` (`tiny-2l128`); a run adds the seed (`tiny-2l128/seed-1`). The
family may contain '-', the size never does, so a model name is split on its LAST '-'. A branch
(training/branching.py) adds a label after '@': `tiny-2l128@nodup` names the branch "nodup" of
every seed of tiny-2l128, `tiny-2l128/seed-1@nodup` one of them; no family, size or label holds '@'.
Names become folder names in a store, so they are checked against strict patterns: `../x`,
slashes, upper case or spaces are refused with an error that states the rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from zoo_common.arguments import whole_number
from zoo_common.errors import ZooError

FAMILY_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]*")
SIZE_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.]*")
BRANCH_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_RUN_KEY = re.compile(r"(?P<name>[^/@]+)/seed-(?P<seed>\d+)(?:@(?P<branch>[^/@]+))?")
_FAMILY_RULE = "lower-case letters, digits, '_', '.', '-', starting with a letter or digit"
_BRANCH_RULE = _FAMILY_RULE
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


def check_branch(label: str) -> str:
    """A branch label ("" is the run itself, no branch)."""
    if label == "":
        return label
    if not isinstance(label, str) or not BRANCH_PATTERN.fullmatch(label):
        raise ZooError(f"invalid branch label {label!r}: use {_BRANCH_RULE}")
    return label


def split_branch(name: str, branch: str | None = None) -> tuple[str, str]:
    """`("tiny-2l128@nodup", None)` -> `("tiny-2l128", "nodup")`; a label both in the name and in
    `branch` must agree. Works on family names too (`tiny@nodup`)."""
    if not isinstance(name, str):
        raise ZooError(f"invalid model name {name!r}: expected <family>-<size>, e.g. tiny-2l128")
    base, _, label = name.partition("@")
    if branch is not None and branch != "" and label and label != branch:
        raise ZooError(f"{name!r} names branch {label!r} but branch={branch!r} was given; use one")
    return base, check_branch(label or (branch or ""))


def labelled(name: str, branch: str | None = None) -> str:
    """A model (or family) name with its branch label in the one spelling of a branch's name:
    `("tiny-2l128", "nodup")` -> `"tiny-2l128@nodup"`; `("tiny-2l128@nodup", None)` stays."""
    base, label = split_branch(name, branch)
    return base + (f"@{label}" if label else "")


def parse_model_name(name: str) -> tuple[str, str]:
    """`"tiny-2l128"` -> `("tiny", "2l128")`; `"my-fam-4l256"` -> `("my-fam", "4l256")`."""
    if not isinstance(name, str) or "-" not in name or "@" in name:
        raise ZooError(f"invalid model name {name!r}: expected <family>-<size>, e.g. tiny-2l128")
    family, size = name.rsplit("-", 1)
    return check_family(family), check_size(size)


def parse_arm(name: str) -> tuple[str, str]:
    """A model name or a branch of one -> (family[@label], size): `"tiny-2l128@nodup"` ->
    `("tiny@nodup", "2l128")`, the form the evaluation tables key a branch family by."""
    base, label = split_branch(name)
    if "-" not in base and "-" in label:  # tiny@nodup-2l128: the family's label, then the size
        family, _, size = name.rpartition("-")
        raise ZooError(f"invalid model name {name!r}: a branch of a model is written "
                       f"<family>-<size>@<label>, e.g. {labelled(f'{base}-{size}', family.partition('@')[2])}")
    family, size = parse_model_name(base)
    return family + (f"@{label}" if label else ""), size


def arm_name(family: str, size: str) -> str:
    """Inverse of parse_arm: `("tiny@nodup", "2l128")` -> `"tiny-2l128@nodup"`."""
    base, label = split_branch(family)
    return f"{base}-{size}" + (f"@{label}" if label else "")


def natural_key(text: str) -> tuple:
    """Sorts digit runs as numbers: "2l64" before "2l128"."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


@dataclass(frozen=True, order=True)
class RunId:
    """One run: a model (family + size), a seed, and a branch label ("" for the run itself).
    Orders by family, size, seed as an int, then branch (a run before its branches)."""

    family: str
    size: str
    seed: int
    branch: str = ""

    def __post_init__(self) -> None:
        check_family(self.family)
        check_size(self.size)
        check_seed(self.seed)
        check_branch(self.branch)

    @property
    def model_name(self) -> str:
        return f"{self.family}-{self.size}"

    @property
    def arm_name(self) -> str:
        """The model name with the branch label: what `zoo compare` and zoo.metrics take."""
        return self.model_name + (f"@{self.branch}" if self.branch else "")

    @property
    def sort_key(self) -> tuple:
        """Family, then size in natural order (1l64, 2l64, 2l128), then seed, then branch."""
        return natural_key(self.family), natural_key(self.size), self.seed, self.branch

    @property
    def key(self) -> str:
        return f"{self.model_name}/seed-{self.seed}" + (f"@{self.branch}" if self.branch else "")

    @property
    def folder(self) -> str:
        """The run's folder name under runs/<family>/<size>/."""
        return f"seed-{self.seed}" + (f"@{self.branch}" if self.branch else "")

    def without_branch(self) -> RunId:
        return RunId(self.family, self.size, self.seed)

    def with_branch(self, label: str) -> RunId:
        return RunId(self.family, self.size, self.seed, label)

    def __str__(self) -> str:
        return f"{self.model_name} seed {self.seed}" + (f" branch {self.branch}" if self.branch else "")

    @classmethod
    def from_name(cls, name: str, seed: int, branch: str | None = None) -> RunId:
        base, label = split_branch(name, branch)
        family, size = parse_model_name(base)
        return cls(family, size, check_seed(seed), label)

    @classmethod
    def parse(cls, key: str) -> RunId:
        """Inverse of `.key`: `"tiny-2l128/seed-1"` -> RunId("tiny", "2l128", 1)."""
        match = _RUN_KEY.fullmatch(key) if isinstance(key, str) else None
        if not match:
            raise ZooError(
                f"invalid run {key!r}: expected <family>-<size>/seed-<N>[@<branch>], e.g. "
                f"tiny-2l128/seed-1"
            )
        return cls.from_name(match["name"], int(match["seed"]), match["branch"] or "")
