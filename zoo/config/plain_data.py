"""Plain data (parsed YAML or JSON) -> frozen config dataclasses, through ONE walker.

`from_data` is driven by the dataclass field types, so every section of a manifest or run record
gets the same checks and the same error messages (the dotted path of the key, what was expected,
what was found, a did-you-mean for an unknown key) without per-field code. It is ours rather than
a library's because pydantic would be a new, large dependency, and dacite's strict mode reports an
unknown key without its path or a suggestion, takes `true` for an integer, refuses YAML's "1e-3"
for a float and leaves __post_init__ errors unplaced: wrapping it to say what the walker says
would take about as much code as the walker.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from typing import Any, Union

from zoo_common.errors import ManifestError, ZooError


def _fail(where: str, message: str) -> ManifestError:
    return ManifestError(f"{where}: {message}" if where else message)


_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_TYPE_NAMES = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    type(None): "null",
}


class _WrongType(ManifestError):
    """A value of the wrong type at `path`; a union catches it to name all its options instead."""

    def __init__(self, path: str, tp: Any, value: Any) -> None:
        found = "nothing (null)" if value is None else repr(value)
        super().__init__(f"{path or 'manifest'}: must be {_type_name(tp)}, got {found}")
        self.path = path


def _type_name(tp: Any) -> str:
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if typing.get_origin(tp) is tuple:
        return "a list"
    if typing.get_origin(tp) in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return _TYPE_NAMES.get(tp, str(tp))


def from_data(tp: Any, value: Any, path: str = "") -> Any:
    """Build `tp` (a dataclass, or a field type in one) from plain data (parsed YAML or JSON).

    Errors are ZooErrors naming the dotted path of the offending key; checks a dataclass makes in
    its own __post_init__ come back prefixed with where that dataclass sits.
    """
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return None
        for option in typing.get_args(tp):
            try:
                return from_data(option, value, path)
            except _WrongType as err:
                if err.path != path:  # wrong deeper down: that error is the one to report
                    raise
        raise _WrongType(path, tp, value)
    if dataclasses.is_dataclass(tp):
        return _dataclass_from_data(tp, value, path)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise _WrongType(path, tp, value)
        if len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],) * len(value)
        elif len(value) != len(args):
            raise _fail(
                path, f"must be a list of {len(args)} items, got {len(value)}: {list(value)}"
            )
        return tuple(from_data(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if tp not in (bool, int, float, str, type(None)):
        raise TypeError(f"config walker cannot handle type {tp!r} at {path}")  # programming error
    if isinstance(value, bool):  # bool is an int to Python, never to a manifest
        if tp is bool:
            return value
    elif tp is str and isinstance(value, str):
        return value
    elif tp is int and (isinstance(value, int) or isinstance(value, float) and value.is_integer()):
        return int(value)
    elif tp is float and (
        isinstance(value, (int, float)) or isinstance(value, str) and _NUMBER.match(value.strip())
    ):
        return float(value)
    raise _WrongType(path, tp, value)


def _dataclass_from_data(cls: Any, value: Any, path: str) -> Any:
    shorthand = getattr(cls, "SHORTHAND", None)  # e.g. a bare seed number
    if shorthand is not None and not isinstance(value, dict):
        value = {shorthand: value}
    if not isinstance(value, dict):
        raise _WrongType(path, cls, value)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    fields = {name: fields[name] for name in getattr(cls, "LEADING_KEYS", ())} | fields
    for key in value:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            valid = f"valid keys in {path}" if path else "valid keys"
            raise _fail(
                f"{path}.{key}" if path else str(key),
                f"unknown key{hint}; {valid}: {', '.join(fields)}",
            )
    optional = getattr(cls, "OPTIONAL_KEYS", None)
    if optional is None:  # by default, the keys whose fields have defaults
        optional = [
            n
            for n, f in fields.items()
            if f.default_factory is not dataclasses.MISSING or f.default is not dataclasses.MISSING
        ]
    kwargs = {}
    for name in fields:
        sub = f"{path}.{name}" if path else name
        if name in value:
            kwargs[name] = from_data(hints[name], value[name], sub)
        elif name not in optional:
            raise _fail(sub, "is required")
    try:
        return cls(**kwargs)
    except ZooError as err:
        if not path or str(err).startswith(path):
            raise
        raise ManifestError(f"{path}: {err}") from None
