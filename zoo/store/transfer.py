"""`zoo push` / `zoo pull`: copy runs between any two stores (local folder, s3://, ...).

Order is the same as a writer's: run records, index and metrics first, then only the blobs the
destination lacks (each decoded and re-hashed on arrival, before it is written), and the checkpoint
and keyframe manifests last. An interrupted copy therefore leaves the destination valid (at worst
some unreferenced blobs) and running it again resumes: present blobs are skipped. A destination
manifest that differs from the source's for the same step, or a run with another config under the
same name, is a conflict and stops the copy before anything is written. Where the destination's
copy has trained further, its records are kept (never rolled back). Blobs the destination already
has are touched, so a `zoo gc` running meanwhile spares them. The destination run's writer lease
is held while copying.
Corpora (immutable, named by fingerprint) are copied file by file where missing.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from zoo_common.errors import ZooError
from zoo_common.progress import progress as progress_bar
from zoo_common.location import Location
from zoo.store.blobs import inline_raw, is_inline
from zoo.config.names import RunId
from zoo.store.run_lock import LEASE_FILE, write_guard
from zoo.store.run_store import CHECKPOINTS, DICTIONARIES, KEYFRAMES
from zoo.store.store import Store
from zoo_common.location import reaching
from zoo.store.verify import manifest_refs


@dataclass(frozen=True)
class TransferReport:
    runs: int
    blobs_copied: int
    blobs_present: int
    bytes_copied: int
    manifests_copied: int
    files_copied: int


def copy_runs(
    source: Store,
    destination: Store,
    run_ids: list[RunId] | None = None,
    *,
    include_corpora: bool = True,
    progress: bool = False,
) -> TransferReport:
    """Copy the given runs (default: all of `source`) into `destination`, resumably."""
    _check_apart(source, destination)
    available = source.runs()
    run_ids = available if run_ids is None else run_ids
    for run_id in run_ids:
        if run_id not in available:
            raise ZooError(
                f"{run_id} is not in {source.url}; it has: "
                f"{', '.join(r.key for r in available) or 'no runs'}"
            )
    totals = [0, 0, 0, 0, 0]
    destination.ensure_created()
    for run_id in run_ids:
        counts = _copy_run(source, destination, run_id, progress=progress)
        totals = [a + b for a, b in zip(totals, counts)]
    if include_corpora:
        with reaching(source.url), reaching(destination.url):
            totals[4] += _copy_missing_files(
                source.location.child("corpora"), destination.location.child("corpora")
            )
    return TransferReport(len(run_ids), *totals)


def _check_apart(source: Store, destination: Store) -> None:
    """Refuse a copy onto the same store or into a folder inside the other store: the copy would
    list, and copy again, the files it is writing (a store inside another's corpora/ folder grew
    its own copies)."""
    a, b = source.location, destination.location
    if set(a.protocols) & set(b.protocols):
        ra, rb = (os.path.realpath(x.root) if x.is_local else x.root.rstrip("/") for x in (a, b))
        if ra == rb:
            raise ZooError(f"source and destination are the same store ({source.url}); give "
                           f"another store to copy to or from")
        inner = a.url if ra.startswith(rb + "/") else b.url if rb.startswith(ra + "/") else None
        if inner is not None:
            outer = b.url if inner == a.url else a.url
            raise ZooError(f"cannot copy between {source.url} and {destination.url}: {inner} lies "
                           f"inside {outer}; give two folders apart")


def _copy_run(source: Store, destination: Store, run_id: RunId, *, progress: bool) -> list[int]:
    src, dst = source.run(run_id), destination.run(run_id)
    with (
        reaching(source.url),
        reaching(destination.url),
        write_guard(dst.location, label=str(run_id)),
    ):
        manifests = {}  # relpath -> (bytes, parsed)
        for folder in (CHECKPOINTS, KEYFRAMES):
            for step in src._steps(folder):
                relpath = src.manifest_name(folder, step)
                manifests[relpath] = (src.location.read_bytes(relpath), src._manifest(folder, step))
        for name in src.dictionary_names():  # records that name blobs, like manifests
            relpath = f"{DICTIONARIES}/{name}.json"
            manifests[relpath] = (src.location.read_bytes(relpath), src.dictionary_record(name))
        for relpath, (data, parsed) in manifests.items():  # conflicts stop us before any write
            try:
                refs = manifest_refs(parsed)
            except ZooError as exc:
                raise ZooError(f"{run_id} {relpath} in {source.url}: {exc}; nothing was copied") from None
            for what, ref in refs.items():  # inline bytes, checked on arrival
                if is_inline(ref):
                    inline_raw(ref, f"{run_id} {relpath} {what}")
            if dst.location.exists(relpath) and _json_or_none(dst.location.read_bytes(relpath)) != parsed:
                raise ZooError(
                    f"{run_id}: {destination.url} already has a different (or damaged) {relpath}; "
                    f"nothing was copied. Remove it there if the source is right."
                )
        files = 0
        if not _destination_is_ahead(src, dst, run_id, destination):  # else its records stay
            files = _copy_all_files(
                src.location,
                dst.location,
                skip=lambda rel: rel == LEASE_FILE or rel.split("/")[0] in (CHECKPOINTS, KEYFRAMES,
                                                                            DICTIONARIES),
            )
        needed = {
            ref["blob"]
            for _, parsed in manifests.values()
            for ref in manifest_refs(parsed).values()
            if not is_inline(ref)  # carried by the manifest itself
        }
        blob_counts = _copy_blobs(
            source, destination, sorted(needed), label=str(run_id), progress=progress
        )
        copied = 0
        for relpath, (data, _) in manifests.items():
            if not dst.location.exists(relpath):
                dst.location.write_atomic(relpath, data)
                copied += 1
    return [*blob_counts, copied, files]


def _json_or_none(data: bytes):
    try:
        return json.loads(data)
    except ValueError:  # a damaged (e.g. truncated) file: it differs from any real manifest
        return None


def _destination_is_ahead(src, dst, run_id: RunId, destination: Store) -> bool:
    """Whether the destination's copy of the run has trained further than the source's: then none
    of its records (status, index, metrics) is replaced, none rolled back (a push of an older copy
    shortened the run's replayable range). A run with another config is a conflict."""
    if not dst.location.exists("run.json"):
        return False
    ours, theirs = src.read_json("run.json"), dst.read_json("run.json")
    if ours.get("config_hash") != theirs.get("config_hash"):
        raise ZooError(
            f"{run_id}: {destination.url} holds a different run under this name (config hash "
            f"{str(theirs.get('config_hash'))[:12]}, the source's {str(ours.get('config_hash'))[:12]}); "
            f"nothing was copied"
        )
    return int(dst.status().get("last_step", -1)) > int(src.status().get("last_step", -1))


def _copy_blobs(
    source: Store, destination: Store, shas: list[str], *, label: str, progress: bool
) -> list[int]:
    def one(sha: str) -> int:
        if destination.blobs.has(sha):
            destination.blobs.touch(sha)  # referenced again soon: a concurrent gc must spare it
            return -1
        data = source.blobs.read_encoded(sha, what=f"{label} in {source.url}")
        destination.blobs.write_encoded(sha, data, origin=source.blobs.url(sha))  # re-hashed
        return len(data)

    copied = present = size = 0
    with ThreadPoolExecutor(8) as pool:
        for result in progress_bar(pool.map(one, shas), total=len(shas), desc=f"{label} blobs",
                                   unit="blob", enabled=progress):
            if result < 0:
                present += 1
            else:
                copied, size = copied + 1, size + result
    return [copied, present, size]


def _relative_files(location: Location) -> list[str]:
    root = location.root.rstrip("/")
    try:
        found = location.fs.find(root)
    except FileNotFoundError:
        return []
    rels = []
    for path in found:
        path = path.rstrip("/")
        rel = path[len(root) :].lstrip("/") if path.startswith(root) else None
        if rel and not rel.rsplit("/", 1)[-1].startswith(".tmp-"):
            rels.append(rel)
    return sorted(rels)


def _copy_all_files(src: Location, dst: Location, *, skip) -> int:
    """Mutable run records (run.json, status.json, metrics, index): always refreshed from source."""
    count = 0
    for rel in _relative_files(src):
        if not skip(rel):
            dst.write_atomic(rel, src.read_bytes(rel))
            count += 1
    return count


def _copy_missing_files(src: Location, dst: Location) -> int:
    count = 0
    for rel in _relative_files(src):
        if not dst.exists(rel):
            dst.write_atomic(rel, src.read_bytes(rel))
            count += 1
    return count
