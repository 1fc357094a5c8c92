"""Manifests: YAML files in `manifests/` that define a family, read into a `FamilyConfig`.

A manifest is data, written by people: every mistake comes back as a ZooError that names the file
and the key (or the line and column, when the YAML itself does not parse), never a traceback.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from zoo_common.errors import ManifestError, ZooError
from zoo.config.run_config import FamilyConfig, from_data

# The built-in families ship as package data of the top-level `manifests` package, installed
# beside `zoo` (site-packages/manifests in a wheel, <repo>/manifests in a checkout). They are found
# there, next to this package, not by importing `manifests`: a user's own `manifests/` folder on
# sys.path (the working directory, say) would be imported instead and hide them.
BUILTIN_FOLDER = Path(__file__).resolve().parents[2] / "manifests"


def builtin_manifest_paths() -> dict[str, Path]:
    """Built-in family name -> manifest path, sorted by name."""
    if not BUILTIN_FOLDER.is_dir():
        return {}
    return {path.stem: path for path in sorted(BUILTIN_FOLDER.glob("*.yaml"))}


def resolve_manifest(path_or_name: str | Path) -> Path:
    """An existing file path as given, else a built-in family name ("tiny")."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    builtins = builtin_manifest_paths()
    if str(path_or_name) in builtins:
        return builtins[str(path_or_name)]
    raise ManifestError(
        f"no manifest {str(path_or_name)!r}: not a file and not a built-in family; "
        f"built-in families: {', '.join(builtins) or '(none found)'}"
    )


def load_manifest(path_or_name: str | Path) -> FamilyConfig:
    """Read and validate a manifest (a path, or a built-in family name like "tiny")."""
    path = resolve_manifest(path_or_name)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ManifestError(f"{path}: cannot read manifest: {err}") from None
    return parse_manifest(text, source=str(path))


def parse_manifest(text: str, *, source: str = "<manifest>") -> FamilyConfig:
    """Validate manifest text; `source` names the file in error messages."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = err.problem or err.context or "invalid YAML"
        raise ManifestError(f"{source}: malformed YAML at {where}: {problem}") from None
    except yaml.YAMLError as err:
        raise ManifestError(f"{source}: malformed YAML: {err}") from None
    if not isinstance(data, dict):
        raise ManifestError(
            f"{source}: a manifest must be a mapping of keys (family, architecture, sizes, "
            f"seeds, ...), got {type(data).__name__}"
        )
    try:
        return from_data(FamilyConfig, data)
    except ZooError as err:
        raise ManifestError(f"{source}: {err}") from None


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (plain PyYAML silently keeps the last one)."""

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                continue  # unhashable keys: SafeLoader reports them with their position
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"duplicate key {key!r} (first at line {seen[key] + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)
