"""A staged write to a run: encode now, make durable and visible later, in order.

Why: on a local disk most of a checkpoint write's wall time is fsync, which waits on the disk, not
the CPU. The training loop stages a step's checkpoint, keyframe and status (blobs encoded and
written to temporary files, manifests rendered) and hands `commit` to a thread, which fsyncs the
blobs, renames them into place and only then writes the manifests. A
crash before the commit leaves no visible trace (at most temporary files, removed by `zoo gc`);
after it, everything is whole. Blobs staged by
one RunWrite are shared between its checkpoint and keyframe (the keyframe's model is the same bytes).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from zoo_common.location import reaching
from zoo.store.run_lock import write_guard

if TYPE_CHECKING:
    from zoo_common.location import StagedFile
    from zoo.store.run_store import RunStore


class RunWrite:
    """Created by RunStore.begin_write(); pass it as `into=` to write_checkpoint / write_keyframe /
    write_json, then call commit() once (from any thread)."""

    def __init__(self, run: RunStore) -> None:
        self.run = run
        self.blobs: dict[str, StagedFile] = {}  # blob relpath -> its staged temporary file
        self.files: list[tuple[str, bytes]] = []  # run-relative name -> bytes, written in order
        # id(tensor) -> (tensor, its version, reference): the keyframe's model is the checkpoint's
        # tensors, so their references are reused instead of hashed again (BlobStore.put_tensors)
        self.stored_tensors: dict[int, tuple] = {}
        self._committed = False

    def add_file(self, name: str, data: bytes) -> None:
        if self._committed:
            raise RuntimeError("this RunWrite is already committed; begin a new one")
        self.files.append((name, data))

    def commit(self) -> None:
        """Blobs durable and in place first, then each manifest/record atomically, in order."""
        if self._committed:
            return
        self._committed = True
        with reaching(self.run.store.url), write_guard(self.run.location, label=self.run.label):
            self.run.store.location.commit_staged(self.blobs.values())
            # then the manifests and records: all written, then fsynced, then renamed in order
            # (one journal commit for all, as for the blobs; an object store PUTs each in order)
            staged = [self.run.location.write_staged(name, data) for name, data in self.files]
            self.run.location.commit_staged([item for item in staged if item is not None])
        self.run.refresh()  # the handle's reads from before the commit are out of date

    def discard(self) -> None:
        """Drop what was staged (nothing of it was visible)."""
        self._committed = True
        for item in self.blobs.values():
            item.discard()
