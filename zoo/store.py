"""The store: where runs live — a local folder by default, any fsspec URL at scale.

Which store: the `url` argument (CLI: --store), else $ZOO_STORE, else DEFAULT_STORE (./zoo-store).
Any fsspec URL works: `s3://bucket/prefix` (install s3fs; credentials from the usual AWS variables
or `storage_options={"key":..., "secret":..., "client_kwargs": {"endpoint_url": ...}}`), and
`hf://datasets/<org>/<repo>` or `hf://<org>/<repo>` through huggingface_hub's HfFileSystem (token
from `huggingface-cli login` or `storage_options={"token": ...}`; HF repos are written through
commits, so use hf:// mainly to read, and `zoo push` to a local or s3 store to write).

Layout (everything plain JSON, Parquet or encoded blobs; nothing is pickled):

    zoo.json                                   {"format": 2}; a newer format is refused (1 is
                                               read too: it had no inline tensors)
    blobs/ab/<sha256>                          one tensor's bytes, encoded (codec.py), named by the
                                               sha256 of its RAW bytes: stored once across steps/runs
    corpora/<fingerprint>/                     prepared corpora (data_index layout)
    runs/<family>/<size>/seed-<S>/
        run.json, environment.json, status.json    resolved config, environment fingerprint, status
        checkpoints/step-00000512.json         checkpoint manifest: tensor name -> blob reference
                                               (tensors <= 4 KiB inline, see blobs.py)
        keyframes/step-00000512.json           keyframe manifest: model refs + optimizer, scheduler,
                                               rng state trees (state_tree.py) + extra (data cursor)
        metrics/  index/                       per-step metrics and the data index (Parquet)
        lock.json                              the writer lease while a writer is active

Writes: blobs first, manifest last (atomic rename locally, one PUT on object stores), so a reader
never sees a half checkpoint; a killed writer leaves only unreferenced blobs, which `zoo gc`
removes. Reads verify every blob's size and sha256 and name run, step, tensor and file on mismatch.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from data_index.arguments import whole_number
from data_index.errors import ZooError
from data_index.fsio import Location, open_location
from zoo import state_tree
from zoo.blobs import BlobStore
from zoo.names import RunId, check_family, check_size
from zoo.run_lock import RunLease, write_guard
from zoo.run_write import RunWrite
from zoo.shared_drain import SharedDrain

DEFAULT_STORE = "./zoo-store"
STORE_ENV = "ZOO_STORE"
FORMAT = 2  # 2: tensors of <= 4 KiB may be stored inline in their manifest (blobs.py)
STORE_FILE = "zoo.json"
CHECKPOINTS, KEYFRAMES = "checkpoints", "keyframes"
INDEX_FOLDER, METRICS_FOLDER = "index", "metrics"  # the run's data index and metrics (Parquet parts)
_STEP_FILE = re.compile(r"step-(\d+)\.json")
_JSON_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.json")
_SEED_FOLDER = re.compile(r"seed-(\d+)")


def resolve_store_url(url: str | os.PathLike | None = None) -> str:
    """The store to use: explicit url, else $ZOO_STORE, else ./zoo-store."""
    if url is not None:
        if not isinstance(url, (str, os.PathLike)):
            raise ZooError(f"a store is a folder or URL (str or path), got {url!r}")
        if not str(url).strip():
            raise ZooError("the store is an empty string: give a folder or URL (--store DIR), or "
                           f"leave it out to use ${STORE_ENV}, else {DEFAULT_STORE}")
        return os.fspath(url)
    return os.environ.get(STORE_ENV) or DEFAULT_STORE


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


@contextmanager
def _discard_on_error(write: RunWrite, *, own: bool) -> Iterator[None]:
    """A write this call began itself is discarded if the call fails (nothing stays staged)."""
    try:
        yield
    except BaseException:
        if own:
            write.discard()
        raise


def _dump(obj: Any, what: str) -> bytes:
    # No indent: json's C encoder only runs without one (a keyframe's optimizer tree took ~10 ms
    # to encode indented). `zoo show` and `python -m json.tool` print the files readably.
    try:
        return json.dumps(obj, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ZooError(f"cannot store {what} as JSON: {exc}") from None


def _load(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ZooError(f"{what} is not valid JSON ({exc}); the file is damaged") from None


@dataclass(frozen=True)
class Checkpoint:
    step: int
    tokens_seen: int
    config_hash: str
    tensors: dict[str, torch.Tensor]


@dataclass(frozen=True)
class Keyframe:
    step: int
    tokens_seen: int
    config_hash: str
    model: dict[str, torch.Tensor]
    optimizer: dict
    scheduler: dict
    rng: dict
    extra: dict


class Store:
    """A store of runs; open it with Store.open()."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self.url = location.url
        self.blobs = BlobStore(location)

    @classmethod
    def open(
        cls, url: str | os.PathLike | None = None, *, storage_options: dict | None = None
    ) -> Store:
        """Open (not create) a store; it is created on the first write. Checks reachability once."""
        text = resolve_store_url(url)
        if "://" not in text and os.path.exists(text) and not os.path.isdir(text):
            raise ZooError(f"store {text} is a file; a store is a folder (or an fsspec URL)")
        with reaching(text):
            store = cls(open_location(text, **(storage_options or {})))
            if store.location.exists(STORE_FILE):
                check_format(
                    _load(store.location.read_bytes(STORE_FILE), f"store {text} (zoo.json)"),
                    f"store {text}",
                )
        return store

    def exists(self) -> bool:
        """Whether anything was ever written here (its zoo.json, or runs of an early store)."""
        with reaching(self.url):
            return self.location.exists(STORE_FILE) or bool(self.location.list("runs"))

    def ensure_created(self) -> None:
        if not self.location.exists(STORE_FILE):
            self.location.create_exclusive(STORE_FILE, _dump({"format": FORMAT}, STORE_FILE))

    def runs(self) -> list[RunId]:
        """Every run with a folder in the store, sorted by family, size, seed (as integers)."""
        found = []
        for family in self.location.list("runs"):
            for size in self.location.list("runs", family):
                for seed_folder in self.location.list("runs", family, size):
                    match = _SEED_FOLDER.fullmatch(seed_folder)
                    try:
                        if match:
                            found.append(RunId(family, size, int(match[1])))
                    except ZooError:
                        continue  # a stray folder with a foreign name is not a run
        return sorted(found)

    def run(self, run_id: RunId) -> RunStore:
        return RunStore(self, run_id)

    def corpus_location(self, fingerprint: str) -> Location:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", fingerprint or "") or fingerprint.strip(".") == "":
            raise ZooError(
                f"invalid corpus fingerprint {fingerprint!r}: letters, digits, '_', '.', '-'"
            )
        return self.location.child("corpora", fingerprint)

    def __repr__(self) -> str:
        return f"Store({self.url!r})"


@contextmanager
def reaching(url: str) -> Iterator[None]:
    """Turn any I/O failure (network, credentials, permissions) into one ZooError naming the URL."""
    try:
        yield
    except ZooError:
        raise
    except Exception as exc:  # OSError, botocore, aiohttp...: the user needs the URL and the reason
        if not _is_io_error(exc):
            raise
        raise ZooError(
            f"I/O failed on store {url} (unreachable, wrong credentials, no permission or "
            f"disk full?): {type(exc).__name__}: {exc}"
        ) from None


def _is_io_error(exc: BaseException) -> bool:
    module = type(exc).__module__.split(".")[0]
    return isinstance(exc, (OSError, TimeoutError)) or module in IO_ERROR_MODULES


# Packages whose exceptions mean "could not reach or write the other side" (network, cloud)
IO_ERROR_MODULES = {
    "botocore",
    "aiobotocore",
    "aiohttp",
    "s3fs",
    "fsspec",
    "huggingface_hub",
    "requests",
    "urllib3",
    "httpx",
    "httpx2",
    "httpcore",
    "gcsfs",
    "adlfs",
}


class RunStore:
    """One run's folder: checkpoints, keyframes, JSON records, metrics and index locations."""

    def __init__(self, store: Store, run_id: RunId) -> None:
        if not isinstance(run_id, RunId):
            raise ZooError(f"expected a RunId, got {run_id!r}")
        self.store = store
        self.run_id = run_id
        self.label = str(run_id)
        self.location = store.location.child(
            "runs", check_family(run_id.family), check_size(run_id.size), f"seed-{run_id.seed}"
        )

    @property
    def index_location(self) -> Location:
        return self.location.child(INDEX_FOLDER)

    @property
    def metrics_location(self) -> Location:
        return self.location.child(METRICS_FOLDER)

    def exists(self) -> bool:
        with reaching(self.store.url):
            return bool(self.location.list())

    def lock(self, owner: str) -> RunLease:
        """The writer lease: `with run.lock("trainer on host x"):` — a second writer is refused."""
        return RunLease(self.location, owner, label=self.label)

    # --- JSON records ------------------------------------------------------------------------
    def write_json(self, name: str, obj: Any, *, into: RunWrite | None = None) -> None:
        self._check_json_name(name)
        data = _dump(obj, f"{self.label} {name}")
        if into is not None:
            into.add_file(name, data)
            return
        with reaching(self.store.url), write_guard(self.location, label=self.label):
            self.store.ensure_created()
            self.location.write_atomic(name, data)

    def status(self) -> dict:
        """The run's status.json ({"last_step", "finished", "total_steps"}), {} before the first
        keyframe lands it."""
        return self.read_json("status.json") if self.location.exists("status.json") else {}

    def read_json(self, name: str) -> dict:
        self._check_json_name(name)
        with reaching(self.store.url):
            if not self.location.exists(name):
                raise ZooError(
                    f"{self.label} has no {name} in {self.store.url}; it has: "
                    f"{', '.join(n for n in self.location.list() if n.endswith('.json')) or 'nothing'}"
                )
            return _load(self.location.read_bytes(name), f"{self.label} {name}")

    @staticmethod
    def _check_json_name(name: str) -> None:
        if not isinstance(name, str) or not _JSON_NAME.fullmatch(name):
            raise ZooError(
                f"invalid record name {name!r}: a plain file name ending in .json, e.g. run.json"
            )

    # --- steps ---------------------------------------------------------------------------------
    def checkpoint_steps(self) -> list[int]:
        return self._steps(CHECKPOINTS)

    def keyframe_steps(self) -> list[int]:
        return self._steps(KEYFRAMES)

    def _steps(self, folder: str) -> list[int]:
        with reaching(self.store.url):
            names = self.location.list(folder)
        return sorted(int(m[1]) for m in map(_STEP_FILE.fullmatch, names) if m)

    @staticmethod
    def manifest_name(folder: str, step: int) -> str:
        return f"{folder}/step-{step:08d}.json"

    def _manifest(self, folder: str, step: int) -> dict:
        kind = folder[:-1]
        step = whole_number(step, "step")
        name = self.manifest_name(folder, step)
        with reaching(self.store.url):
            if not self.location.exists(name):
                steps = self._steps(folder)
                raise ZooError(
                    f"no {kind} at step {step} for {self.label} in {self.store.url}; "
                    f"stored steps: {format_steps(steps)}"
                )
            data = self.location.read_bytes(name)
        what = f"{self.label} {kind} step {step} ({self.location.url}/{name})"
        manifest = check_format(_load(data, what), what)
        if manifest.get("kind") != kind or manifest.get("step") != step:
            raise ZooError(
                f"{what} is a {manifest.get('kind')} of step {manifest.get('step')}; the file is misplaced"
            )
        return manifest

    def checkpoint_manifest(self, step: int) -> dict:
        return self._manifest(CHECKPOINTS, step)

    def keyframe_manifest(self, step: int) -> dict:
        return self._manifest(KEYFRAMES, step)

    # --- checkpoints ---------------------------------------------------------------------------
    def begin_write(self, *, bypass_cache: bool = False) -> RunWrite:
        """A staged write: pass it as `into=` to the write methods, then `commit()` it.
        `bypass_cache`: the writer will not read these blobs back, so they are written around the
        page cache (Location.write_staged)."""
        return RunWrite(self, bypass_cache=bypass_cache)

    def write_checkpoint(
        self,
        step: int,
        tensors: dict[str, torch.Tensor],
        *,
        tokens_seen: int,
        config_hash: str,
        into: RunWrite | None = None,
    ) -> None:
        """Blobs first, then the manifest by one atomic write: readers see all of it or none.
        With `into`, both are staged there and land when it is committed."""
        header = self._header("checkpoint", step, tokens_seen, config_hash)
        self._check_tensor_dict(tensors, "tensors")
        write = into or self.begin_write()
        with reaching(self.store.url), write_guard(self.location, label=self.label), _discard_on_error(
            write, own=into is None
        ):
            self.store.ensure_created()
            manifest = {**header, "tensors": self.store.blobs.put_tensors(
                tensors, write.blobs, write.bypass_cache, write.stored_tensors)}
            write.add_file(
                self.manifest_name(CHECKPOINTS, step),
                _dump(manifest, f"{self.label} checkpoint {step}"),
            )
            if into is None:
                write.commit()

    def read_checkpoint(self, step: int) -> Checkpoint:
        """All tensors of a stored checkpoint, verified."""
        manifest = self.checkpoint_manifest(step)
        with reaching(self.store.url):
            tensors = self.store.blobs.get_tensors(manifest["tensors"], what=f"{self.label} step {step}")
        return Checkpoint(step, manifest["tokens_seen"], manifest["config_hash"], tensors)

    def read_checkpoint_bytes(self, step: int, each: Callable[[str, memoryview], None]) -> dict:
        """Hand each tensor's verified raw bytes to `each(name, raw)` (BlobStore.start_reads: raw is
        valid only during the call); returns the checkpoint's manifest."""
        manifest = self.checkpoint_manifest(step)
        with reaching(self.store.url):
            self.start_checkpoint_reads(step, manifest, each).finish()
        return manifest

    def start_checkpoint_reads(self, step: int, manifest: dict,
                               each: Callable[[str, memoryview], None]) -> SharedDrain:
        """read_checkpoint_bytes of a manifest already read, begun on the pool while the caller
        does other work; it ends with the caller's `finish()` (inside `reaching(store.url)`, which
        names the store in I/O errors) or `cancel()`."""
        return self.store.blobs.start_reads(manifest["tensors"], each, what=f"{self.label} step {step}")

    def read_tensor(self, step: int, name: str) -> torch.Tensor:
        """One tensor of a checkpoint, without reading the others."""
        refs = self.checkpoint_manifest(step)["tensors"]
        if name not in refs:
            names = list(refs)
            shown = ", ".join(names[:12]) + (
                f", … ({len(names)} tensors)" if len(names) > 12 else ""
            )
            raise ZooError(f"{self.label} step {step} has no tensor {name!r}; it has: {shown}")
        with reaching(self.store.url):
            return self.store.blobs.get_tensor(
                refs[name], what=f"{self.label} step {step} tensor {name!r}"
            )

    # --- keyframes -----------------------------------------------------------------------------
    def write_keyframe(
        self,
        step: int,
        *,
        model: dict[str, torch.Tensor],
        optimizer: dict,
        scheduler: dict,
        rng: dict,
        extra: dict,
        tokens_seen: int,
        config_hash: str,
        into: RunWrite | None = None,
    ) -> None:
        """A checkpoint plus everything needed to continue bit-exactly. It does not write a
        checkpoint manifest: call write_checkpoint for the same step too (the blobs are shared).
        With `into`, it is staged there and lands when that is committed."""
        header = self._header("keyframe", step, tokens_seen, config_hash)
        self._check_tensor_dict(model, "model")
        blobs = self.store.blobs
        write = into or self.begin_write()
        with reaching(self.store.url), write_guard(self.location, label=self.label), _discard_on_error(
            write, own=into is None
        ):
            self.store.ensure_created()
            # Every tensor of the trees is stored in one parallel put with the model's (optimizer
            # state is 2x the model); its reference is filled into the JSON form afterwards.
            slots: list[tuple[dict, torch.Tensor]] = []

            def defer(_path: str, tensor: torch.Tensor) -> dict:
                slots.append(({}, tensor))
                return slots[-1][0]

            trees = {
                part: state_tree.to_json(tree, defer, path=part)
                for part, tree in (("optimizer", optimizer), ("scheduler", scheduler), ("rng", rng))
            }
            stored = blobs.put_tensors(
                {**{f"model/{k}": v for k, v in model.items()},
                 **{f"tree/{i}": tensor for i, (_, tensor) in enumerate(slots)}},
                write.blobs,
                write.bypass_cache,
                write.stored_tensors,
            )
            for i, (slot, _) in enumerate(slots):
                slot.update(stored[f"tree/{i}"])
            manifest = {
                **header,
                "model": {k: stored[f"model/{k}"] for k in model},
                **trees,
                "extra": _load(_dump(extra, "keyframe extra"), "keyframe extra"),
            }
            write.add_file(
                self.manifest_name(KEYFRAMES, step), _dump(manifest, f"{self.label} keyframe {step}")
            )
            if into is None:
                write.commit()

    def read_keyframe(self, step: int) -> Keyframe:
        manifest = self.keyframe_manifest(step)
        what = f"{self.label} keyframe step {step}"
        blobs = self.store.blobs
        with reaching(self.store.url):
            model = blobs.get_tensors(manifest["model"], what=what)
            trees = {
                part: state_tree.from_json(
                    manifest[part],
                    lambda path, ref: blobs.get_tensor(ref, what=f"{what} tensor {path!r}"),
                    path=part,
                )
                for part in ("optimizer", "scheduler", "rng")
            }
        return Keyframe(
            step,
            manifest["tokens_seen"],
            manifest["config_hash"],
            model,
            trees["optimizer"],
            trees["scheduler"],
            trees["rng"],
            manifest["extra"],
        )

    # --- resuming ------------------------------------------------------------------------------
    def delete_after(self, step: int) -> None:
        """Drop checkpoints and keyframes after `step` (a resume from a keyframe at `step` redoes
        them). Their blobs stay until `zoo gc`."""
        with reaching(self.store.url), write_guard(self.location, label=self.label):
            for folder in (
                KEYFRAMES,
                CHECKPOINTS,
            ):  # keyframes first: resume never sees a later one
                for later in [s for s in self._steps(folder) if s > step]:
                    self.location.remove(self.manifest_name(folder, later))

    def _header(self, kind: str, step: int, tokens_seen: int, config_hash: str) -> dict:
        for field, value in (("step", step), ("tokens_seen", tokens_seen)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ZooError(f"{kind} {field} must be a non-negative integer, got {value!r}")
        if not isinstance(config_hash, str):
            raise ZooError(f"{kind} config_hash must be a string, got {config_hash!r}")
        return {
            "format": FORMAT,
            "kind": kind,
            "run": self.run_id.key,
            "step": step,
            "tokens_seen": tokens_seen,
            "config_hash": config_hash,
        }

    @staticmethod
    def _check_tensor_dict(tensors: Any, what: str) -> None:
        if not isinstance(tensors, dict) or not all(isinstance(k, str) for k in tensors):
            raise ZooError(f"{what} must be a dict of name -> torch.Tensor")

    def __repr__(self) -> str:
        return f"RunStore({self.store.url!r}, {self.run_id.key!r})"
