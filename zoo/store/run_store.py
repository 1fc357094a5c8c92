"""One run's folder in a store: its checkpoints, keyframes, JSON records, metrics and index.

Writes: blobs first, manifest last (atomic rename locally, one PUT on object stores), so a reader
never sees a half checkpoint; a killed writer leaves only unreferenced blobs, which `zoo gc`
removes. Reads verify every blob's size and sha256 and name run, step, tensor and file on mismatch.
"""
from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from zoo_common.arguments import whole_number
from zoo_common.errors import (
    ArgumentError,
    IntegrityError,
    NotFoundError,
    StepNotFoundError,
    ZooError,
)
from zoo_common.location import Location, reaching
from zoo.config.names import RunId, check_family, check_size
from zoo.store import state_tree
from zoo.store.records import FORMAT, check_format, dump_json, format_steps, load_json
from zoo.store.run_lock import RunLease, write_guard
from zoo.store.run_write import RunWrite

if TYPE_CHECKING:
    from zoo.store.store import Store

CHECKPOINTS, KEYFRAMES = "checkpoints", "keyframes"
DICTIONARIES = "dictionaries"  # sparse dictionaries trained on the run's activations (zoo/dictionaries)
_DICTIONARY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
INDEX_FOLDER, METRICS_FOLDER = "index", "metrics"  # the run's data index and metrics (Parquet parts)
_STEP_FILE = re.compile(r"step-(\d+)\.json")
_JSON_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.json")


@contextmanager
def _discard_on_error(write: RunWrite, *, own: bool) -> Iterator[None]:
    """A write this call began itself is discarded if the call fails (nothing stays staged)."""
    try:
        yield
    except BaseException:
        if own:
            write.discard()
        raise


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


class RunStore:
    """One run's folder: checkpoints, keyframes, JSON records, metrics and index locations.

    A handle reads each record, manifest and listing once (on `s3://` or `http://` every read is
    a round trip) and remembers it; its own writes make it forget. `refresh()` forgets the rest,
    to see what another process wrote since (open_run gives a fresh handle every call)."""

    def __init__(self, store: Store, run_id: RunId) -> None:
        if not isinstance(run_id, RunId):
            raise ZooError(f"expected a RunId, got {run_id!r}")
        self.store = store
        self.run_id = run_id
        self.label = str(run_id)
        self.location = store.location.child(
            "runs", check_family(run_id.family), check_size(run_id.size), run_id.folder
        )
        self._read: dict[str, object] = {}  # run-relative file -> parsed JSON (None: absent)
        self._listed: dict[str, list[int]] = {}  # folder -> its steps

    def refresh(self) -> None:
        """Forget what this handle has read: the next reads see the store as it is now."""
        self._read.clear()
        self._listed.clear()

    def _json_file(self, name: str, what: str):
        """A JSON file of the run, parsed, read once per handle (None when there is none)."""
        if name not in self._read:
            with reaching(self.store.url):
                data = self.location.read_if_exists(name)
            self._read[name] = None if data is None else load_json(data, what)
        return self._read[name]

    @property
    def index_location(self) -> Location:
        return self.location.child(INDEX_FOLDER)

    def index_record(self) -> dict:
        """The data index's header (index/index.json: the order's parameters), read once."""
        name = f"{INDEX_FOLDER}/index.json"
        record = self._json_file(name, f"{self.label} {name}")
        if record is None:
            raise NotFoundError(f"{self.label} has no data index in {self.store.url} (missing {name})")
        return copy.deepcopy(record)

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
        data = dump_json(obj, f"{self.label} {name}")
        if into is not None:
            into.add_file(name, data)
            return
        with reaching(self.store.url), write_guard(self.location, label=self.label):
            self.store.ensure_created()
            self.location.write_atomic(name, data)
        self._read.pop(name, None)

    def status(self) -> dict:
        """The run's status.json ({"last_step", "finished", "total_steps"}), {} before the first
        keyframe lands it."""
        record = self._json_file("status.json", f"{self.label} status.json")
        return {} if record is None else copy.deepcopy(record)

    def read_json(self, name: str) -> dict:
        """A JSON record of the run (run.json, environment.json, ...), a copy the caller may change."""
        self._check_json_name(name)
        record = self._json_file(name, f"{self.label} {name}")
        if record is None:
            with reaching(self.store.url):
                present = [n for n in self.location.list() if n.endswith(".json")]
            raise NotFoundError(f"{self.label} has no {name} in {self.store.url}; it has: "
                                f"{', '.join(present) or 'nothing'}")
        return copy.deepcopy(record)

    @staticmethod
    def _check_json_name(name: str) -> None:
        if not isinstance(name, str) or not _JSON_NAME.fullmatch(name):
            raise ArgumentError(
                f"invalid record name {name!r}: a plain file name ending in .json, e.g. run.json"
            )

    # --- steps ---------------------------------------------------------------------------------
    def checkpoint_steps(self) -> list[int]:
        return self._steps(CHECKPOINTS)

    def keyframe_steps(self) -> list[int]:
        return self._steps(KEYFRAMES)

    def _steps(self, folder: str) -> list[int]:
        if folder not in self._listed:
            with reaching(self.store.url):
                names = self.location.list(folder)
            self._listed[folder] = sorted(int(m[1]) for m in map(_STEP_FILE.fullmatch, names) if m)
        return list(self._listed[folder])

    @staticmethod
    def manifest_name(folder: str, step: int) -> str:
        return f"{folder}/step-{step:08d}.json"

    def _manifest(self, folder: str, step: int) -> dict:
        kind = folder[:-1]
        step = whole_number(step, "step")
        name = self.manifest_name(folder, step)
        what = f"{self.label} {kind} step {step} ({self.location.url}/{name})"
        manifest = self._json_file(name, what)
        if manifest is None:
            raise StepNotFoundError(
                f"no {kind} at step {step} for {self.label} in {self.store.url}; "
                f"stored steps: {format_steps(self._steps(folder))}"
            )
        manifest = check_format(manifest, what)
        if manifest.get("kind") != kind or manifest.get("step") != step:
            raise IntegrityError(
                f"{what} is a {manifest.get('kind')} of step {manifest.get('step')}; the file is misplaced"
            )
        return copy.deepcopy(manifest)

    def checkpoint_manifest(self, step: int) -> dict:
        return self._manifest(CHECKPOINTS, step)

    def keyframe_manifest(self, step: int) -> dict:
        return self._manifest(KEYFRAMES, step)

    # --- checkpoints ---------------------------------------------------------------------------
    def begin_write(self) -> RunWrite:
        """A staged write: pass it as `into=` to the write methods, then `commit()` it."""
        return RunWrite(self)

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
                tensors, write.blobs, write.stored_tensors)}
            write.add_file(
                self.manifest_name(CHECKPOINTS, step),
                dump_json(manifest, f"{self.label} checkpoint {step}"),
            )
            if into is None:
                write.commit()

    def read_checkpoint(self, step: int) -> Checkpoint:
        """All tensors of a stored checkpoint, verified."""
        manifest = self.checkpoint_manifest(step)
        with reaching(self.store.url):
            tensors = self.store.blobs.get_tensors(manifest["tensors"], what=f"{self.label} step {step}")
        return Checkpoint(step, manifest["tokens_seen"], manifest["config_hash"], tensors)

    # --- dictionaries ----------------------------------------------------------------------------
    def dictionary_names(self) -> list[str]:
        """The dictionaries stored beside this run (record names, sorted)."""
        if DICTIONARIES not in self._listed:
            with reaching(self.store.url):
                names = self.location.list(DICTIONARIES)
            self._listed[DICTIONARIES] = [n[:-5] for n in names if n.endswith(".json")]
        return list(self._listed[DICTIONARIES])

    def dictionary_record(self, name: str) -> dict:
        """A dictionary's record (what it is, how it was trained, its tensors' references)."""
        self._check_dictionary_name(name)
        relpath = f"{DICTIONARIES}/{name}.json"
        what = f"{self.label} dictionary {name}"
        record = self._json_file(relpath, what)
        if record is None:
            known = ", ".join(self.dictionary_names()[:8]) or "none (train one with `zoo dict train`)"
            raise NotFoundError(f"{self.label} has no dictionary {name!r}; it has: {known}")
        record = check_format(record, what)
        if record.get("kind") != "dictionary":
            raise IntegrityError(f"{what} is a {record.get('kind')!r} record, not a dictionary")
        return copy.deepcopy(record)

    def write_dictionary(self, name: str, record: dict, tensors: dict[str, torch.Tensor]) -> None:
        """Blobs first, then the record by one atomic write (as a checkpoint's)."""
        self._check_dictionary_name(name)
        self._check_tensor_dict(tensors, "tensors")
        write = self.begin_write()
        with reaching(self.store.url), write_guard(self.location, label=self.label), _discard_on_error(
            write, own=True
        ):
            self.store.ensure_created()
            refs = self.store.blobs.put_tensors(tensors, write.blobs, write.stored_tensors)
            body = {**record, "format": FORMAT, "kind": "dictionary", "run": self.run_id.key,
                    "tensors": refs}
            write.add_file(f"{DICTIONARIES}/{name}.json", dump_json(body, f"{self.label} dictionary"))
            write.commit()

    def read_dictionary(self, name: str) -> tuple[dict, dict[str, torch.Tensor]]:
        """(record, tensors) of a stored dictionary, every blob verified."""
        record = self.dictionary_record(name)
        with reaching(self.store.url):
            tensors = self.store.blobs.get_tensors(record["tensors"],
                                                   what=f"{self.label} dictionary {name}")
        return record, tensors

    @staticmethod
    def _check_dictionary_name(name: str) -> None:
        if not isinstance(name, str) or not _DICTIONARY_NAME.fullmatch(name):
            raise ArgumentError(f"invalid dictionary name {name!r}: letters, digits, '_', '.', '-'")

    def read_tensor(self, step: int, name: str) -> torch.Tensor:
        """One tensor of a checkpoint, without reading the others."""
        refs = self.checkpoint_manifest(step)["tensors"]
        if name not in refs:
            names = list(refs)
            shown = ", ".join(names[:12]) + (
                f", … ({len(names)} tensors)" if len(names) > 12 else ""
            )
            raise NotFoundError(f"{self.label} step {step} has no tensor {name!r}; it has: {shown}")
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
                write.stored_tensors,
            )
            for i, (slot, _) in enumerate(slots):
                slot.update(stored[f"tree/{i}"])
            manifest = {
                **header,
                "model": {k: stored[f"model/{k}"] for k in model},
                **trees,
                "extra": load_json(dump_json(extra, "keyframe extra"), "keyframe extra"),
            }
            write.add_file(
                self.manifest_name(KEYFRAMES, step), dump_json(manifest, f"{self.label} keyframe {step}")
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
        self.refresh()
        with reaching(self.store.url), write_guard(self.location, label=self.label):
            for folder in (
                KEYFRAMES,
                CHECKPOINTS,
            ):  # keyframes first: resume never sees a later one
                for later in [s for s in self._steps(folder) if s > step]:
                    self.location.remove(self.manifest_name(folder, later))
        self.refresh()

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
