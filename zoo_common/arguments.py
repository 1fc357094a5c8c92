"""Whole-number arguments of the public API: the one check every entry point shares.

Why: researchers pass seeds, steps and sample ids straight from numpy arrays (np.int64), and a
float or a string must never be truncated into another run's seed or another step (1.5 -> 1).
"""
from __future__ import annotations

import argparse
import numbers

from zoo_common.errors import ArgumentError


def whole_number(value, what: str, *, minimum: int | None = None) -> int:
    """`value` as a Python int when it is an integer (numpy integers included; bool is not);
    a ZooError naming `what` otherwise, or when it is below `minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentError(f"{what} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ArgumentError(f"{what} must be >= {minimum}, got {value}")
    return value


def count_argument(minimum: int):
    """An argparse type: a whole number >= minimum (a thread, process or character count)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}")
        return value

    return parse
