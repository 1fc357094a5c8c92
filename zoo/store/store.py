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
    runs/<family>/<size>/seed-<S>[@<branch>]/  a run, or a branch of it (run.json names its parent)
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

import os
import re

from zoo_common.errors import ZooError
from zoo_common.location import Location, open_location, reaching
from zoo.config.names import RunId
from zoo.store.blobs import BlobStore
from zoo.store.records import FORMAT, STORE_FILE, check_format, dump_json, load_json
from zoo.store.run_store import RunStore

DEFAULT_STORE = "./zoo-store"
STORE_ENV = "ZOO_STORE"
_SEED_FOLDER = re.compile(r"seed-(\d+)(?:@([^/@]+))?")


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


class Store:
    """A store of runs; open it with Store.open()."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self.url = location.url
        self.blobs = BlobStore(location)
        self._created = False  # its zoo.json was seen: nothing to ask again

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
            data = store.location.read_if_exists(STORE_FILE)
        if data is not None:
            check_format(load_json(data, f"store {text} (zoo.json)"), f"store {text}")
            store._created = True
        return store

    def exists(self) -> bool:
        """Whether anything was ever written here (its zoo.json, or runs of an early store)."""
        if self._created:
            return True
        with reaching(self.url):
            return self.location.exists(STORE_FILE) or bool(self.location.list("runs"))

    def ensure_created(self) -> None:
        if not self.location.exists(STORE_FILE):  # asked every time: it may have been deleted
            self.location.create_exclusive(STORE_FILE, dump_json({"format": FORMAT}, STORE_FILE))
        self._created = True

    def runs(self, *, branches: bool = True) -> list[RunId]:
        """Every run with a folder in the store, by family, size (natural order), seed and branch;
        `branches=False`: the trained runs only, no branches."""
        found = []
        for family in self.location.list("runs"):
            for size in self.location.list("runs", family):
                for seed_folder in self.location.list("runs", family, size):
                    match = _SEED_FOLDER.fullmatch(seed_folder)
                    try:
                        if match:
                            found.append(RunId(family, size, int(match[1]), match[2] or ""))
                    except ZooError:
                        continue  # a stray folder with a foreign name is not a run
        if not branches:
            found = [run_id for run_id in found if not run_id.branch]
        return sorted(found, key=lambda run_id: run_id.sort_key)

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
