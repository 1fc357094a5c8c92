"""Nested state (optimizer, scheduler, RNG states) <-> JSON plus tensors, with no pickle.

torch's `state_dict()`s are trees of dicts (str or int keys), lists, tuples, tensors and plain
scalars. Pickle would store them in one line and execute code on load; we store the tree as JSON and
each tensor as a blob, so a keyframe can be read by any language and loading it runs nothing.

JSON form: str, bool, None and ints are themselves; floats are themselves unless not finite
(`{"$float": "nan" | "inf" | "-inf"}`); lists are JSON arrays; every JSON object is a tag:
`{"$dict": [[key, value], ...]}` (keeps int keys and order), `{"$tuple": [...]}`,
`{"$tensor": <tensor reference>}`. Floats round-trip exactly (Python writes the shortest repr).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from zoo_common.errors import IntegrityError, ZooError

StoreTensor = Callable[[str, torch.Tensor], dict]
LoadTensor = Callable[[str, dict], torch.Tensor]
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def to_json(tree: Any, store_tensor: StoreTensor, *, path: str = "") -> Any:
    """The JSON form of `tree`; each tensor is handed to `store_tensor(path, tensor)` for its reference."""
    if tree is None or isinstance(tree, (bool, str)):
        return tree
    if isinstance(tree, int):
        return int(tree)
    if isinstance(tree, float):
        if math.isfinite(tree):
            return float(tree)
        return {"$float": "nan" if math.isnan(tree) else ("inf" if tree > 0 else "-inf")}
    if isinstance(tree, torch.Tensor):
        return {"$tensor": store_tensor(path or "/", tree)}
    if isinstance(tree, dict):
        items = []
        for key, value in tree.items():
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise ZooError(
                    f"cannot store state at {path or '/'}: key {key!r} is a "
                    f"{type(key).__name__}; keys must be str or int"
                )
            items.append([key, to_json(value, store_tensor, path=f"{path}/{key}")])
        return {"$dict": items}
    if isinstance(tree, tuple):
        return {
            "$tuple": [to_json(v, store_tensor, path=f"{path}/{i}") for i, v in enumerate(tree)]
        }
    if isinstance(tree, list):
        return [to_json(v, store_tensor, path=f"{path}/{i}") for i, v in enumerate(tree)]
    raise ZooError(
        f"cannot store state at {path or '/'}: a {type(tree).__name__} is not one of "
        f"dict, list, tuple, tensor, int, float, bool, None, str"
    )


def from_json(node: Any, load_tensor: LoadTensor, *, path: str = "") -> Any:
    """Inverse of to_json; `load_tensor(path, reference)` returns each tensor."""
    if node is None or isinstance(node, (bool, str, int, float)):
        return node
    if isinstance(node, list):
        return [from_json(v, load_tensor, path=f"{path}/{i}") for i, v in enumerate(node)]
    if isinstance(node, dict) and len(node) == 1:
        ((tag, body),) = node.items()
        if tag == "$dict" and isinstance(body, list):
            return {key: from_json(value, load_tensor, path=f"{path}/{key}") for key, value in body}
        if tag == "$tuple" and isinstance(body, list):
            return tuple(from_json(v, load_tensor, path=f"{path}/{i}") for i, v in enumerate(body))
        if tag == "$tensor":
            return load_tensor(path or "/", body)
        if tag == "$float" and body in _NONFINITE:
            return _NONFINITE[body]
    raise IntegrityError(f"malformed stored state at {path or '/'}: {str(node)[:80]}")


def tensor_refs(node: Any) -> list[dict]:
    """Every tensor reference in a JSON form (gc, verify and push need them without loading)."""
    found: list[dict] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            if "$tensor" in item and len(item) == 1:
                found.append(item["$tensor"])
            else:
                stack.extend(item.values())
    return found
