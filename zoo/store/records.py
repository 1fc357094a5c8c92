"""The store's JSON records: their format number, and how they are written and read back.

Every manifest and record names the format it was written in, so a newer Model Zoo's data is
refused with a clear message instead of being misread.
"""
from __future__ import annotations

import json
from typing import Any

from zoo_common.errors import ZooError

FORMAT = 2  # 2: tensors of <= 4 KiB may be stored inline in their manifest (blobs.py)
STORE_FILE = "zoo.json"


def format_steps(steps: list[int]) -> str:
    """'0, 1, 2, 4, …, 1000' — short enough for an error message."""
    if not steps:
        return "none"
    if len(steps) <= 8:
        return ", ".join(map(str, steps))
    return ", ".join(map(str, steps[:4])) + ", …, " + str(steps[-1]) + f" ({len(steps)} steps)"


def check_format(obj: Any, what: str) -> dict:
    """Refuse data written by a newer Model Zoo (and anything that is not a JSON object)."""
    if not isinstance(obj, dict):
        raise ZooError(f"{what} is not a JSON object; the file is damaged")
    found = obj.get("format", 1)
    if not isinstance(found, int) or found > FORMAT:
        raise ZooError(
            f"{what} has format {found!r}, written by a newer Model Zoo; this version "
            f"reads formats up to {FORMAT}: upgrade model-zoo (pip install -U model-zoo)"
        )
    return obj


def dump_json(obj: Any, what: str) -> bytes:
    # No indent: json's C encoder only runs without one, and a keyframe's optimizer tree is
    # large. `zoo show` and `python -m json.tool` print the files readably.
    try:
        return json.dumps(obj, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ZooError(f"cannot store {what} as JSON: {exc}") from None


def load_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ZooError(f"{what} is not valid JSON ({exc}); the file is damaged") from None
