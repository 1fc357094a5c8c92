"""Writing a new file of tens of MB into the page cache: one big write() vs 1 MiB pieces.

Why it matters: a cold `zoo.load` writes the snapshot's model.safetensors, `zoo snapshot` and
replayed steps write one too, and pulls write blobs. data_index/piecewise_writes.py caps every
buffered write at 1 MiB; this shows what that buys, side by side, alternating in one process:

- bytes:        21 MB of random bytes into a new file, in one os.write() vs write_all (1 MiB pieces),
                and in pieces of 64 KiB / 2 MiB / 4 MiB for the shape of the effect;
- safetensors:  the same 21 MB as 22 float32 tensors, safetensors.torch.save_file vs
                zoo.safetensors_file.save_tensors (the same bytes, tested).

Each write goes to a new file in a new folder, as a snapshot does; nothing is fsynced.

    python benchmarks/bench_file_writes.py
"""
from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_index.piecewise_writes import WRITE_PIECE, write_all
from zoo.safetensors_file import save_tensors

REPEAT = 11
SIZE = 21 * 1000 * 1000


def in_pieces(piece: int):
    def write(fd: int, data: np.ndarray) -> None:
        view = memoryview(data)
        for start in range(0, len(view), piece):
            os.write(fd, view[start:start + piece])
    return write


def one_call(fd: int, data: np.ndarray) -> None:
    view = memoryview(data)
    while len(view):
        view = view[os.write(fd, view):]


def timed_new_file(scratch: Path, write, data) -> float:
    path = Path(tempfile.mkdtemp(dir=scratch)) / "data.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        started = time.perf_counter()
        write(fd, data)
        return time.perf_counter() - started
    finally:
        os.close(fd)


def timed_save(scratch: Path, save, tensors) -> float:
    path = Path(tempfile.mkdtemp(dir=scratch)) / "model.safetensors"
    started = time.perf_counter()
    save(tensors, str(path), metadata={"format": "pt"})
    return time.perf_counter() - started


def main() -> None:
    from safetensors.torch import save_file

    data = np.random.default_rng(0).integers(0, 256, SIZE, dtype=np.uint8)
    tensors = {f"layer.{i}.weight": torch.from_numpy(data[i * 952_000:(i + 1) * 952_000].copy())
               .view(torch.float32) for i in range(22)}
    writers = {"one write()": one_call, f"{WRITE_PIECE >> 20} MiB pieces (write_all)": write_all,
               "64 KiB pieces": in_pieces(64 << 10), "2 MiB pieces": in_pieces(2 << 20),
               "4 MiB pieces": in_pieces(4 << 20)}
    savers = {"save_file": save_file, "save_tensors": save_tensors}
    times: dict[str, list[float]] = {name: [] for name in [*writers, *savers]}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        scratch = Path(tmp)
        for round_ in range(REPEAT):  # alternate, so drift in the machine's speed hits all alike
            order = list(writers.items()) if round_ % 2 == 0 else list(reversed(writers.items()))
            for name, write in order:
                times[name].append(timed_new_file(scratch, write, data))
            for name, save in (savers.items() if round_ % 2 == 0 else reversed(savers.items())):
                times[name].append(timed_save(scratch, save, tensors))
    median = {name: statistics.median(values) * 1e3 for name, values in times.items()}
    print(f"new {SIZE / 1e6:.0f} MB file, median of {REPEAT}, ms (kernel {platform.release()}, "
          f"{os.cpu_count()} CPUs)")
    print("| write                          | ms    | / 1 MiB pieces |")
    print("|--------------------------------|-------|----------------|")
    base = median[f"{WRITE_PIECE >> 20} MiB pieces (write_all)"]
    for name in writers:
        print(f"| {name:30s} | {median[name]:5.1f} | {median[name] / base:14.2f} |")
    print("\n| safetensors file  | ms    |\n|-------------------|-------|")
    for name in savers:
        print(f"| {name:17s} | {median[name]:5.1f} |")
    print(f"save_file / save_tensors: {median['save_file'] / median['save_tensors']:.2f}")

if __name__ == "__main__":
    main()
