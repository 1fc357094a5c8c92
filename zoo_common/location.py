"""Where bytes live: a local folder or any fsspec URL, with atomic writes.

Both the data index and the store write through a Location so that the same code serves a local
folder, `s3://bucket/prefix` and `hf://...`. Writes are atomic: on a local disk we write a temporary
file, fsync it and rename it into place; on an object store a single PUT is already atomic (readers
see the old object or the new one, never half).

A write can also be staged: the temporary file is written now and made durable and renamed into
place later (`commit_staged`), so a writer can hand the slow part (fsync waits on the disk, not the
CPU) to a thread while it computes on. Until the commit, readers see nothing of it.

Also here: `reaching`, which turns any I/O failure into one ZooError naming the URL.
"""
from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import fsspec

from zoo_common.errors import NotFoundError, ZooError


@dataclass(frozen=True)
class Location:
    """A folder on some filesystem: `fs` is the fsspec filesystem, `root` the folder in it."""

    fs: fsspec.AbstractFileSystem
    root: str
    url: str

    @property
    def protocols(self) -> tuple[str, ...]:
        """Its filesystem's fsspec protocol names (("file", "local"), ("s3", "s3a"), ...)."""
        return _protocols(self.fs)

    @property
    def is_local(self) -> bool:
        return "file" in self.protocols

    def path(self, *parts: str) -> str:
        for part in parts:
            if part.startswith("/") or ".." in part.split("/"):
                raise ZooError(f"refusing path {part!r}: it leaves the store folder {self.url}")
        return "/".join([self.root.rstrip("/"), *[p.strip("/") for p in parts if p]])

    def child(self, *parts: str) -> Location:
        joined = "/".join(p.strip("/") for p in parts)
        return Location(self.fs, self.path(*parts), self.url.rstrip("/") + "/" + joined)

    def exists(self, *parts: str) -> bool:
        if self.is_local:  # fsspec's local exists() is slow, and a checkpoint write asks per blob
            return os.path.exists(self.path(*parts))
        return self.fs.exists(self.path(*parts))

    def read_bytes(self, *parts: str) -> bytes:
        data = self.read_if_exists(*parts)
        if data is None:
            raise NotFoundError(f"missing file {self.path(*parts)} in {self.url}")
        return data

    def read_if_exists(self, *parts: str) -> bytes | None:
        """The file's bytes, or None when there is no such file: one request on a remote store,
        where asking `exists` first would be two."""
        try:
            return self.fs.cat_file(self.path(*parts))
        except FileNotFoundError:
            return None

    def write_atomic(self, relpath: str, data: bytes) -> None:
        """Write `data` so that readers see either nothing/old bytes or all of the new bytes."""
        staged = self.write_staged(relpath, data)
        if staged is not None:
            self.commit_staged([staged])

    def write_staged(self, relpath: str, data: bytes) -> StagedFile | None:
        """Write `data` to a temporary file beside `relpath`, not yet durable nor visible; None
        when the write is already complete (object stores: one PUT is atomic and durable)."""
        target = self.path(relpath)
        if not self.is_local:
            self.fs.pipe_file(target, data)
            return None
        folder = os.path.dirname(target)
        tmp = os.path.join(folder, f".tmp-{os.getpid()}-{uuid.uuid4().hex}")
        staged = StagedFile(tmp, target)
        try:
            os.makedirs(folder, exist_ok=True)
            with open(staged.tmp, "wb") as handle:
                handle.write(data)
        except OSError as exc:
            staged.discard()
            raise self._write_error(target, exc) from None
        except BaseException:
            staged.discard()
            raise
        return staged

    def commit_staged(self, staged: Iterable[StagedFile]) -> None:
        """fsync every staged file, then rename each into place: after a crash a final name holds
        complete bytes or does not exist. On error the remaining temporary files are removed."""
        items, renamed = list(staged), 0
        try:
            # All written before any fsync: the first fsync commits the filesystem's journal with
            # every file's metadata in it, and the others find little left to do.
            for item in items:
                fd = os.open(item.tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            for item in items:
                os.replace(item.tmp, item.target)
                renamed += 1
        except OSError as exc:
            self._discard(items[renamed:])
            raise self._write_error(items[renamed].target, exc) from None
        except BaseException:
            self._discard(items[renamed:])
            raise

    @staticmethod
    def _discard(items: list[StagedFile]) -> None:
        for item in items:
            item.discard()

    def _write_error(self, target: str, exc: OSError) -> ZooError:
        return ZooError(
            f"cannot write {target}: {exc.strerror or exc} (is {self.url} a writable "
            f"folder with free space?); nothing was half-written"
        )

    def create_exclusive(self, relpath: str, data: bytes) -> bool:
        """Create `relpath` only if absent; False when it already exists (a lock taken by another)."""
        target = self.path(relpath)
        if self.is_local:
            # Written whole under a temporary name, then hard-linked to its name (which fails if
            # the name exists): nobody ever sees the file empty or half-written. O_EXCL then a
            # write left a moment in which a second writer read an empty lock, judged it stale
            # and took the run too.
            folder = os.path.dirname(target)
            os.makedirs(folder, exist_ok=True)
            tmp = os.path.join(folder, f".tmp-{os.getpid()}-{uuid.uuid4().hex}")
            try:
                with open(tmp, "xb") as handle:
                    handle.write(data)
                os.link(tmp, target)
                return True
            except FileExistsError:
                return False
            except OSError:  # a filesystem without hard links: exclusive create, then write
                try:
                    fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    return False
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                return True
            finally:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:  # its creation failed (e.g. the disk is full)
                    pass
        if self.fs.exists(target):
            return False
        self.fs.pipe_file(target, data)
        return True

    def list(self, *parts: str) -> list[str]:
        """Names directly inside a folder, sorted; [] when the folder does not exist."""
        folder = self.path(*parts)
        try:
            entries = self.fs.ls(folder, detail=False)
        except FileNotFoundError:
            return []
        names = sorted({e.rstrip("/").rsplit("/", 1)[-1] for e in entries})
        return [n for n in names if not n.startswith(".tmp-")]

    def remove(self, relpath: str) -> None:
        target = self.path(relpath)
        if self.fs.exists(target):
            self.fs.rm(target, recursive=True)

    def local_path(self, *parts: str) -> Path:
        """The path on this machine; only for local locations (memory-mapping needs one)."""
        if not self.is_local:
            raise ZooError(f"{self.url} is not a local folder")
        return Path(self.path(*parts))


@dataclass(frozen=True)
class StagedFile:
    """A written temporary file and the name it will be renamed to on commit."""

    tmp: str
    target: str

    def discard(self) -> None:
        try:
            os.unlink(self.tmp)
        except OSError:
            pass


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a local file, read in blocks (corpus manifests, exported snapshots)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


def open_location(url: str | os.PathLike, **storage_options) -> Location:
    """Open a local path or fsspec URL (`s3://b/p`, `hf://datasets/x/y`, `memory://p`)."""
    text = os.fspath(url)
    if "://" not in text:
        path = os.path.abspath(os.path.expanduser(text))
        return Location(fsspec.filesystem("file"), path, path)
    protocol = text.split("://", 1)[0]
    if protocol in ("s3", "s3a"):
        # s3fs asks for a file's size (one more request) before every read it may split into
        # concurrent ranges; store files are small, so one GET each is faster far from the store
        storage_options = {"max_concurrency": 1, **storage_options}
    try:
        fs, root = fsspec.core.url_to_fs(text, **storage_options)
    except ImportError as exc:
        hint = " (pip install 'model-zoo[s3]')" if protocol in ("s3", "s3a") else ""
        raise ZooError(f"cannot open {text}: support for {protocol}:// is not installed{hint}: {exc}") from None
    except ValueError as exc:
        raise ZooError(f"cannot open {text}: {exc}") from None
    return Location(fs, root.rstrip("/"), text.rstrip("/"))


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
