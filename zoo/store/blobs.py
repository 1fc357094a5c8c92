"""Content-addressed tensor blobs: stored once by the sha256 of their raw bytes, verified on every read.

Layout: `blobs/<first two hex digits>/<sha256>` in the store, each file an encoded blob (see
codec.py). The address is the hash of the RAW tensor bytes (not of the compressed file), so the
same weights dedup across steps and runs whatever codec wrote them, and a reader can check that the
bytes it decoded are exactly the bytes that were written. A tensor reference in a manifest is
`{"blob": sha, "dtype": "float32", "shape": [..], "encoding": "bytegroup-zstd", "nbytes": n}`.

Tensors of at most INLINE_BYTES (biases, norms, optimizer step counts, RNG states) live in the
reference itself: `"encoding": "inline"` and `"data"`, their raw bytes in base64, still named and
checked by `blob`, the sha256 of those bytes. They are two thirds of a small model's tensors and
under 1 % of its bytes; as files each would cost a file, an fsync and a rename per checkpoint (a
PUT on object stores), more than the tensor itself.

Writes are atomic (Location.write_atomic), so a blob file is either absent or complete; a blob that
already exists is not rewritten (dedup), only its modification time is refreshed on local disks so
that `zoo gc`'s grace period protects it while the manifest that will reference it is being written.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from zoo_common.errors import IntegrityError, ZooError
from zoo_common.location import Location
from zoo.store import codec

BLOB_FOLDER = "blobs"
_DTYPE_NAMES = (
    "float64",
    "float32",
    "float16",
    "bfloat16",
    "float8_e4m3fn",
    "float8_e5m2",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "bool",
    "complex64",
    "complex128",
)
DTYPES: dict[str, torch.dtype] = {n: getattr(torch, n) for n in _DTYPE_NAMES if hasattr(torch, n)}
_BLOB_ID = re.compile(r"[0-9a-f]{64}")
INLINE = "inline"  # the encoding of a tensor stored in its manifest reference
INLINE_BYTES = 4096
_NUMPY_DTYPES = {torch.float64, torch.float32, torch.float16, torch.int64, torch.int32, torch.int16,
                 torch.int8, torch.uint8, torch.bool}  # torch.Tensor.numpy() supports these
# Hashing, zstd and file I/O release the GIL, so threads decode and encode blobs in parallel.
_WORKERS = max(1, min(8, os.cpu_count() or 1))


def _parallel(function: Callable, items: list) -> list:
    """function(*item) for every item on a thread pool, results in order. When one fails, the
    first error (in order) is raised only after every task has ended, so nothing is still being
    staged or written once the caller handles it."""
    if len(items) <= 1:
        return [function(*item) for item in items]
    with ThreadPoolExecutor(min(_WORKERS, len(items)), thread_name_prefix="zoo-blobs") as pool:
        futures = [pool.submit(function, *item) for item in items]
    return [future.result() for future in futures]


def sha256_hex(raw: bytes | memoryview) -> str:
    return hashlib.sha256(raw).hexdigest()


def dtype_name(dtype: torch.dtype) -> str:
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise ZooError(f"cannot store tensors of dtype {dtype}; supported: {', '.join(DTYPES)}")
    return name


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The raw bytes of a tensor in row-major order (bf16 and friends go through a uint8 view)."""
    tensor = tensor.detach()
    if tensor.device.type == "cpu" and tensor.dtype in _NUMPY_DTYPES and tensor.is_contiguous():
        return tensor.numpy().reshape(-1).view(np.uint8).data
    flat = tensor.cpu().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().data


def tensor_from_bytes(raw: np.ndarray, dtype_text: str, shape: list[int]) -> torch.Tensor:
    """A tensor over the decoded bytes (no copy: the tensor owns that memory from here on)."""
    if dtype_text not in DTYPES:
        raise ZooError(
            f"stored dtype {dtype_text!r} is unknown to this version; supported: {', '.join(DTYPES)}"
        )
    dtype = DTYPES[dtype_text]
    if len(raw) == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.from_numpy(raw).view(dtype).reshape(shape)


class BlobStore:
    """The `blobs/` folder of a store."""

    def __init__(self, store_location: Location, *, level: int = codec.DEFAULT_LEVEL) -> None:
        self.location = store_location
        self.level = level

    @staticmethod
    def relpath(sha: str) -> str:
        if not isinstance(sha, str) or not _BLOB_ID.fullmatch(sha):
            raise ZooError(f"invalid blob id {sha!r}: expected 64 lower-case hex digits")
        return f"{BLOB_FOLDER}/{sha[:2]}/{sha}"

    def url(self, sha: str) -> str:
        return f"{self.location.url}/{self.relpath(sha)}"

    def has(self, sha: str) -> bool:
        return self.location.exists(self.relpath(sha))

    def list_all(self) -> list[str]:
        """Every blob id in the folder (other files, such as a stray copy, are not blobs)."""
        return [
            sha
            for prefix in self.location.list(BLOB_FOLDER)
            for sha in self.location.list(BLOB_FOLDER, prefix)
            if _BLOB_ID.fullmatch(sha)
        ]

    # --- writing -------------------------------------------------------------------------------
    def put_tensor(self, tensor: torch.Tensor, staged: dict | None = None) -> dict:
        """Store one tensor (once) and return its manifest reference.

        With `staged` (relpath -> StagedFile), a new blob is only staged: written to a temporary
        file and added to the dict, and the caller commits them (Location.commit_staged) before
        writing anything that references them. Blobs staged in the same dict are reused."""
        name = dtype_name(tensor.dtype)
        raw = tensor_bytes(tensor)
        sha = sha256_hex(raw)
        if len(raw) <= INLINE_BYTES:
            return {"blob": sha, "dtype": name, "shape": list(tensor.shape), "encoding": INLINE,
                    "nbytes": len(raw), "data": base64.b64encode(raw).decode("ascii")}
        relpath = self.relpath(sha)
        if staged is not None and relpath in staged:
            pass
        elif self.location.exists(relpath):
            self._touch(relpath)
        else:
            blob = codec.encode(raw, itemsize=tensor.element_size(), level=self.level)
            if staged is None:
                self.location.write_atomic(relpath, blob)
            else:
                item = self.location.write_staged(relpath, blob)
                if item is not None and staged.setdefault(relpath, item) is not item:
                    item.discard()  # another thread staged the same bytes first
        return {
            "blob": sha,
            "dtype": name,
            "shape": list(tensor.shape),
            "encoding": codec.BYTEGROUP_ZSTD,
            "nbytes": len(raw),
        }

    def put_tensors(self, tensors: dict[str, torch.Tensor], staged: dict | None = None,
                    stored: dict[int, tuple] | None = None) -> dict[str, dict]:
        """Store many tensors in parallel threads; returns name -> reference in the input order.

        `stored` (RunWrite.stored_tensors) remembers each tensor object stored through it with
        its version counter: the same tensor, unmodified since, gets its reference back without
        being hashed again (a keyframe's model is its checkpoint's tensors)."""
        for name, value in tensors.items():
            if not isinstance(value, torch.Tensor):
                raise ZooError(f"tensor {name!r} is a {type(value).__name__}, not a torch.Tensor")
        refs = {}
        if stored is not None:
            for name, tensor in tensors.items():
                seen = stored.get(id(tensor))
                if seen is not None and seen[0] is tensor and seen[1] == tensor._version:
                    refs[name] = seen[2]
        todo = [name for name in tensors if name not in refs]
        for name, ref in zip(todo, _parallel(self.put_tensor, [(tensors[n], staged) for n in todo])):
            refs[name] = ref
        if stored is not None:
            for name, tensor in tensors.items():
                stored[id(tensor)] = (tensor, tensor._version, refs[name])
        return {name: refs[name] for name in tensors}

    def write_encoded(self, sha: str, blob: bytes, *, origin: str | None = None) -> None:
        """Store an already-encoded blob (push/pull), after checking it decodes to `sha`; errors
        name `origin` (where the bytes came from) as the file."""
        self.verify_encoded(sha, blob, what=f"incoming blob {sha}", file=origin)
        self.location.write_atomic(self.relpath(sha), blob)

    def touch(self, sha: str) -> None:
        """Mark a present blob as just used: `zoo gc` spares blobs younger than its grace period, so
        a writer about to reference a blob it found already stored (a pull, a checkpoint) keeps it
        from a gc running at the same time."""
        self._touch(self.relpath(sha))

    def _touch(self, relpath: str) -> None:
        if self.location.is_local:
            try:
                os.utime(self.location.path(relpath))
            except OSError:
                pass

    # --- reading -------------------------------------------------------------------------------
    def read_encoded(self, sha: str, *, what: str = "") -> bytes:
        relpath = self.relpath(sha)
        try:
            return self.location.fs.cat_file(self.location.path(relpath))
        except FileNotFoundError:
            raise self._missing(sha, what) from None

    def _missing(self, sha: str, what: str) -> IntegrityError:
        return IntegrityError(
            f"{what + ': ' if what else ''}blob file {self.url(sha)} is missing"
            f" (run `zoo verify`; `zoo pull` can restore it from another store)"
        )

    def verify_encoded(
        self, sha: str, blob: bytes | memoryview, *, what: str = "", nbytes: int | None = None,
        file: str | None = None,
    ) -> np.ndarray:
        """Decode and check size and hash; IntegrityError naming `what` and the file (`file`,
        default this store's) otherwise."""
        prefix = f"{what + ': ' if what else ''}blob file {file or self.url(sha)}"
        try:
            raw = codec.decode(blob)
        except IntegrityError as exc:
            raise IntegrityError(f"{prefix} is corrupt: {exc}") from None
        if nbytes is not None and len(raw) != nbytes:
            raise IntegrityError(f"{prefix} holds {len(raw)} bytes, the manifest says {nbytes}")
        actual = sha256_hex(raw)
        if actual != sha:
            raise IntegrityError(
                f"{prefix} is corrupt: its bytes hash to {actual[:16]}…, not to its name"
            )
        return raw

    def get_raw(self, sha: str, *, nbytes: int | None = None, what: str = "") -> np.ndarray:
        return self.verify_encoded(sha, self.read_encoded(sha, what=what), what=what, nbytes=nbytes)

    def get_ref_raw(self, ref: dict, *, what: str = "") -> np.ndarray:
        """The verified raw bytes a tensor reference names: from its blob file, or inline."""
        if is_inline(ref):
            return inline_raw(ref, what)
        sha, _, _, nbytes = _unpack(ref, what)
        return self.get_raw(sha, nbytes=nbytes, what=what)

    def get_tensor(self, ref: dict, *, what: str = "") -> torch.Tensor:
        """Load one verified tensor from its manifest reference."""
        sha, dtype_text, shape, nbytes = _unpack(ref, what)
        raw = self.get_ref_raw(ref, what=what)
        expected = (
            int(np.prod(shape, dtype=np.int64)) * DTYPES[dtype_text].itemsize
            if dtype_text in DTYPES
            else None
        )
        if expected is not None and expected != len(raw):
            raise IntegrityError(
                f"{what}: blob {sha} holds {len(raw)} bytes, shape {shape} of "
                f"{dtype_text} needs {expected}"
            )
        return tensor_from_bytes(raw, dtype_text, shape)

    def get_tensors(self, refs: dict[str, dict], *, what: str = "") -> dict[str, torch.Tensor]:
        """Load many tensors in parallel; `what` is prefixed to each tensor's name in errors.
        The largest go first, so the embedding is not left last on one thread."""
        order = sorted(refs, key=lambda name: -_ref_nbytes(refs[name]))
        loaded = _parallel(lambda name: self.get_tensor(refs[name], what=f"{what} tensor {name!r}"),
                           [(name,) for name in order])
        by_name = dict(zip(order, loaded))
        return {name: by_name[name] for name in refs}


def is_inline(ref) -> bool:
    """Whether a tensor reference holds its bytes itself (no blob file)."""
    return isinstance(ref, dict) and ref.get("encoding") == INLINE


def inline_raw(ref: dict, what: str = "") -> np.ndarray:
    """The raw bytes of an inline reference, checked against its size and hash."""
    sha, _, _, nbytes = _unpack(ref, what)
    prefix = f"{what + ': ' if what else ''}inline tensor data"
    try:
        raw = np.frombuffer(base64.b64decode(ref["data"], validate=True), dtype=np.uint8).copy()
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise IntegrityError(f"{prefix} is missing or not base64 (the manifest is damaged)") from None
    if len(raw) != nbytes:
        raise IntegrityError(f"{prefix} holds {len(raw)} bytes, the reference says {nbytes}")
    if sha256_hex(raw) != sha:
        raise IntegrityError(f"{prefix} is corrupt: its bytes do not hash to {sha[:16]}…")
    return raw


def _unpack(ref, what: str) -> tuple:
    try:
        return ref["blob"], ref["dtype"], ref["shape"], ref["nbytes"]
    except (KeyError, TypeError):
        raise IntegrityError(f"{what}: malformed tensor reference {ref!r}") from None


def _ref_nbytes(ref) -> int:
    nbytes = ref.get("nbytes") if isinstance(ref, dict) else None
    return nbytes if isinstance(nbytes, int) else 0
