"""`zoo gc`: remove blobs no manifest references, safely.

Unreferenced blobs appear when a writer is killed between its blobs and its manifest, and after
`delete_after` on resume. A blob is removed only when (1) no checkpoint or keyframe manifest of any
run references it — manifests are read first, and gc refuses to run if one cannot be read, since
its references would be unknown — and (2) it is older than a grace period (default 1 hour), so the
fresh blobs of a writer whose manifest is not written yet survive. Writers (and push/pull) refresh
the modification time of a blob they reuse on local disks (blobs.py), so reuse is protected too; on
object stores keep the grace period longer than any single checkpoint write or copy.

Temporary files (`.tmp-*`, in blobs/ and in run folders) of writers that were killed before they
committed are removed under the same grace period (local stores; object stores have none).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

from zoo_common.errors import ZooError
from zoo.store.blobs import BLOB_FOLDER, is_inline
from zoo.store.run_store import CHECKPOINTS, KEYFRAMES
from zoo.store.store import Store
from zoo_common.location import reaching
from zoo.store.verify import manifest_refs

DEFAULT_GRACE_SECONDS = 3600.0


@dataclass(frozen=True)
class GcReport:
    referenced: int
    removed: list[str]
    removed_bytes: int
    kept_young: int
    dry_run: bool
    removed_temporary: int = 0  # temporary files of killed writers
    missing: int = 0  # referenced blobs that are not in the store (`zoo verify` names them)


def referenced_blobs(store: Store) -> set[str]:
    """Every blob any manifest of any run references; ZooError if a manifest is unreadable."""
    shas: set[str] = set()
    for run_id in store.runs():
        run = store.run(run_id)
        for folder in (CHECKPOINTS, KEYFRAMES):
            for step in run._steps(folder):
                try:
                    refs = manifest_refs(run._manifest(folder, step))
                except ZooError as exc:
                    raise ZooError(
                        f"gc stopped, nothing removed: {run_id} {folder[:-1]} step {step}: {exc}. "
                        f"Fix or delete that manifest first (`zoo verify` lists problems)"
                    ) from None
                shas.update(ref["blob"] for ref in refs.values() if not is_inline(ref))
        for name in run.dictionary_names():  # a dictionary lives as long as its run
            try:
                refs = manifest_refs(run.dictionary_record(name))
            except ZooError as exc:
                raise ZooError(f"gc stopped, nothing removed: {run_id} dictionary {name}: {exc}. "
                               f"Fix or delete that record first (`zoo verify` lists problems)") from None
            shas.update(ref["blob"] for ref in refs.values() if not is_inline(ref))
    return shas


def collect_garbage(
    store: Store, *, grace_seconds: float = DEFAULT_GRACE_SECONDS, dry_run: bool = False
) -> GcReport:
    if not grace_seconds >= 0:  # also refuses NaN
        raise ZooError(
            f"the grace period must be 0 or more, got {grace_seconds / 3600:g} hours "
            f"(it protects what a running writer has not committed yet; default 1 hour)"
        )
    with reaching(store.url):
        keep = referenced_blobs(store)
        now = time.time()
        removed, removed_bytes, young, present = [], 0, 0, 0
        for sha in store.blobs.list_all():
            if sha in keep:
                present += 1
                continue
            path = store.location.path(store.blobs.relpath(sha))
            info = store.location.fs.info(path)
            if now - _mtime(store, path, info) < grace_seconds:
                young += 1
                continue
            removed.append(sha)
            removed_bytes += int(info.get("size", 0))
            if not dry_run:
                store.location.remove(store.blobs.relpath(sha))
        temporary = [p for p in _temporary_files(store) if now - p.stat().st_mtime >= grace_seconds]
        if not dry_run:
            for path in temporary:
                path.unlink(missing_ok=True)
    return GcReport(len(keep), removed, removed_bytes, young, dry_run, len(temporary),
                    missing=len(keep) - present)


def _temporary_files(store: Store) -> list:
    """Temporary files of writers that were killed before their commit: beside blobs, and in run
    folders (manifests, records, index and metrics parts are staged the same way)."""
    if not store.location.is_local:
        return []
    return sorted([*store.location.local_path(BLOB_FOLDER).glob("*/.tmp-*"),
                   *store.location.local_path("runs").rglob(".tmp-*")])


def _mtime(store: Store, path: str, info: dict) -> float:
    for key in ("mtime", "LastModified", "last_modified", "created"):
        value = info.get(key)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, datetime):
            return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    try:
        stamp = store.location.fs.modified(path)
        return (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).timestamp()
    except (NotImplementedError, OSError):
        return time.time()  # age unknown: treat as fresh, never remove
