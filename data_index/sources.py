"""Turn a SOURCE string into documents with stable ids, through `datasets` for files and the hub.

SOURCE is one of:
- a file or folder path: `.txt` (one document per paragraph, i.e. blank-line separated block),
  `.jsonl`/`.json` and `.parquet` (one document per row, text column "text" or `path#column`);
  a folder takes every such file below it in sorted path order. Document id "relpath#row".
- `hf:NAME[:CONFIG][@SPLIT][#COLUMN]` — a Hugging Face hub dataset through `datasets.load_dataset`
  (split "train" and column "text" by default). Offline it fails at once with a message: we check
  HF_HUB_OFFLINE / HF_DATASETS_OFFLINE and probe the endpoint for a few seconds, never hang.
  Document id "NAME[:CONFIG]@SPLIT#row".
- `builtin:NAME[?k=v&...]` — see builtin_sources.py.
- `mix:[{"source": S, "weight": W}, ...]` — a deterministic weighted mix of text sources (mixing.py;
  a manifest writes it as `data.sources`).
Empty texts are skipped (they would add nothing but an EOS); their ids are simply absent.
"""
from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from data_index.builtin_sources import DocumentSource, TokenizerBoundSource, resolve_builtin
from data_index.mixing import PREFIX, resolve_mix
from data_index.tasks import TaskSamples
from zoo_common.errors import ZooError

FILE_BUILDERS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
PROBE_SECONDS = 3.0


def resolve_source(spec: str, *, cache_dir: Path | None = None,
                   quiet: bool = False) -> DocumentSource | TokenizerBoundSource | TaskSamples:
    """Parse SOURCE and check it can be read (exists, readable, online) before any work is done."""
    if spec.startswith(PREFIX):
        return resolve_mix(spec, lambda part: resolve_source(part, cache_dir=cache_dir, quiet=quiet))
    if spec.startswith("builtin:"):
        return resolve_builtin(spec[len("builtin:"):])
    if spec.startswith("hf:"):
        return _hub_source(spec, quiet=quiet)
    return _file_source(spec, cache_dir=cache_dir, quiet=quiet)


def _file_source(spec: str, *, cache_dir: Path | None, quiet: bool) -> DocumentSource:
    path, column = Path(spec), "text"
    if not path.exists() and "#" in spec:
        head, _, column = spec.rpartition("#")
        path = Path(head)
    if not path.exists():
        raise ZooError(
            f"source {spec!r} is not a file or folder; give a path to .txt/.jsonl/.json/.parquet files, "
            f"hf:NAME[:CONFIG][@SPLIT][#COLUMN], or builtin:NAME (builtin:pydoc, builtin:induction, builtin:modular)"
        )
    root = path if path.is_dir() else path.parent
    if path.is_dir():
        files = [p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix in FILE_BUILDERS
                 and not any(part.startswith(".") for part in p.relative_to(path).parts)]
        if not files:
            raise ZooError(f"folder {path} holds no {'/'.join(FILE_BUILDERS)} files")
    else:
        if path.suffix not in FILE_BUILDERS:
            raise ZooError(f"cannot read {path}: unsupported file type {path.suffix!r}; supported: {', '.join(FILE_BUILDERS)}")
        files = [path]
    for file in files:
        if not os.access(file, os.R_OK):
            raise ZooError(f"cannot read {file}: permission denied")

    def documents() -> Iterator[tuple[str, str]]:
        import datasets

        for file in files:
            builder = FILE_BUILDERS[file.suffix]
            extra = {"sample_by": "paragraph"} if builder == "text" else {}
            try:
                with _quiet_datasets(quiet):
                    table = datasets.load_dataset(builder, data_files=[str(file)], split="train",
                                                  cache_dir=str(cache_dir) if cache_dir else None, **extra)
            except ValueError as exc:
                if "corresponds to no data" in str(exc):
                    continue  # an empty file: no documents, not an error by itself
                raise ZooError(f"cannot read {file}: {type(exc).__name__}: {exc}") from None
            except Exception as exc:  # datasets raises many types for a damaged file
                if type(_innermost_error(exc)).__name__ == "SchemaInferenceError":
                    continue  # an empty file again (datasets' other way of saying so)
                raise ZooError(f"cannot read {file}: {_innermost(exc)}") from None
            relative = file.relative_to(root).as_posix()
            yield from _rows(table, column, f"{relative}#", where=str(file))

    return DocumentSource(str(path) if column == "text" else spec, documents,
                          {"files": [f.relative_to(root).as_posix() for f in files], "column": column})


def _rows(table, column: str, prefix: str, *, where: str) -> Iterator[tuple[str, str]]:
    if column not in table.column_names:
        raise ZooError(f"{where} has no column {column!r}; columns: {table.column_names} (choose one with #COLUMN)")
    for row, text in enumerate(table[column]):
        if text:
            if not isinstance(text, str):
                raise ZooError(f"{where} column {column!r} row {row} is {type(text).__name__}, not text")
            yield f"{prefix}{row}", text


def parse_hub_spec(spec: str) -> tuple[str, str | None, str, str]:
    """`hf:NAME[:CONFIG][@SPLIT][#COLUMN]` -> (name, config, split, column)."""
    rest = spec[len("hf:"):]
    rest, _, column = rest.partition("#")
    rest, _, split = rest.partition("@")
    name, _, config = rest.partition(":")
    if not name:
        raise ZooError(f"{spec!r} names no dataset; write hf:NAME[:CONFIG][@SPLIT][#COLUMN], e.g. hf:roneneldan/TinyStories@train#text")
    return name, config or None, split or "train", column or "text"


def _hub_source(spec: str, *, quiet: bool) -> DocumentSource:
    name, config, split, column = parse_hub_spec(spec)
    _require_hub_online(name)

    def documents() -> Iterator[tuple[str, str]]:
        import datasets

        try:
            with _quiet_datasets(quiet):
                table = datasets.load_dataset(name, config, split=split)
        except Exception as exc:
            raise ZooError(f"cannot load hub dataset {name!r} (config {config}, split {split}): {type(exc).__name__}: {exc}") from None
        yield from _rows(table, column, f"{name}{':' + config if config else ''}@{split}#", where=f"hf:{name}")

    return DocumentSource(spec, documents, {"hub_dataset": name, "config": config, "split": split, "column": column})


def _require_hub_online(name: str) -> None:
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
            raise ZooError(f"hub dataset {name!r} needs the network, but {var} is set (offline); "
                           f"prepare from local files or a builtin: source instead")
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = urlparse(endpoint).hostname or "huggingface.co"
    port = urlparse(endpoint).port or (443 if endpoint.startswith("https") else 80)
    reached: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
            reached.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)  # getaddrinfo has no timeout of its own
    thread.start()
    thread.join(PROBE_SECONDS + 0.5)
    if not reached:
        raise ZooError(f"hub dataset {name!r} needs the network, but {host}:{port} cannot be reached (offline?); "
                       f"prepare from local files or a builtin: source instead")


@contextmanager
def _quiet_datasets(quiet: bool):
    """Silence `datasets` progress bars while it reads, restoring the caller's setting after."""
    if not quiet:
        yield
        return
    import datasets
    from datasets.utils import logging as ds_logging

    was_disabled = datasets.are_progress_bars_disabled()
    level = ds_logging.get_verbosity()
    datasets.disable_progress_bars()
    ds_logging.set_verbosity_error()
    try:
        yield
    finally:
        ds_logging.set_verbosity(level)
        if not was_disabled:
            datasets.enable_progress_bars()


def _innermost_error(exc: BaseException) -> BaseException:
    """The original error under datasets' wrappers ("An error occurred while generating the
    dataset" hides e.g. the JSON parser's line and column, or a UnicodeDecodeError)."""
    seen = [exc]
    while (exc.__cause__ or exc.__context__) is not None and len(seen) < 20:
        exc = exc.__cause__ or exc.__context__
        seen.append(exc)
    return seen[-1]


def _innermost(exc: BaseException) -> str:
    """`_innermost_error` as one line for a message."""
    inner = _innermost_error(exc)
    text = f"{type(inner).__name__}: {str(inner).splitlines()[0] if str(inner) else ''}"
    if isinstance(inner, UnicodeDecodeError):
        text += " (the file is not UTF-8 text)"
    return text
