"""The environment fingerprint: what, besides the manifest, decides the bits of a run.

Same manifest + same fingerprint => bit-identical weights (the determinism contract). On CPU the
thread count changes reductions (1 vs 2 threads differ within a few steps), so it is recorded and
restored on resume and replay; on GPU deterministic algorithms are switched on and recorded.
"""
from __future__ import annotations

import os
import platform
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from zoo_common.openmp import wait_policy

# Keys whose difference can change bits; the rest are recorded for the researcher's information.
BIT_RELEVANT = ("torch", "device", "cpu_capability", "threads", "deterministic", "world_size", "machine")


def fingerprint(device: torch.device | str = "cpu", *, world_size: int = 1,
                backend: str | None = None) -> dict:
    """Describe this process's numerics as a JSON-safe dict (`threads` is per process)."""
    device = torch.device(device)
    import transformers  # deferred: only needed for the record

    record = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "device": _device_name(device),
        "threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "world_size": world_size,
        "omp_wait_policy": wait_policy(),  # when threads sleep, not what they compute
    }
    if device.type == "cuda":
        record["cuda"] = torch.version.cuda
        record["cudnn"] = torch.backends.cudnn.version()
    if backend is not None:
        record["backend"] = backend  # torch.distributed backend: gloo (CPU) or nccl (GPU)
    return record


def differences(recorded: dict, current: dict) -> dict[str, tuple]:
    """Bit-relevant keys whose values differ: {key: (recorded, current)}."""
    return {
        key: (recorded.get(key), current.get(key))
        for key in BIT_RELEVANT
        if recorded.get(key) != current.get(key)
    }


def check_device(device: torch.device | str) -> str:
    """`device` when this machine can run on it (cpu, cuda, cuda:N); a ZooError saying why not."""
    from zoo_common.errors import ZooError

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ZooError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ZooError(
                f"device {device}: no CUDA GPU is usable here (torch {torch.__version__}"
                f"{', a CPU-only build' if torch.version.cuda is None else ''}); use cpu")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise ZooError(f"device {device}: this machine has {count} GPU(s), cuda:0..cuda:{count - 1}")
    elif parsed.type != "cpu":
        raise ZooError(f"device {device!r} is not supported; use cpu or cuda[:N]")
    return str(device)


_THREAD_COUNT = threading.RLock()


@contextmanager
def held_thread_count() -> Iterator[None]:
    """Hold torch's thread count for one computation whose bits depend on it (a replay, a
    dictionary's fit, an activation scan at a recorded count), and put the previous count back.

    The count is process-wide: in a server, a request that set it while the replay worker ran
    would change the replay's bits. Every such computation holds this lock, so they run one at a
    time in a process (re-entrant: a replay inside a held computation is fine)."""
    with _THREAD_COUNT:
        previous = torch.get_num_threads()
        try:
            yield
        finally:
            torch.set_num_threads(previous)


def apply(device: torch.device | str, *, threads: int | None) -> None:
    """Put this process into the deterministic regime the fingerprint describes."""
    if threads is not None:
        torch.set_num_threads(int(threads))
    if torch.device(device).type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def busy_machine_note(threads: int, *, window: float = 0.25) -> str | None:
    """A note when other processes keep this machine's cores busy, or None: another training on
    the same cores slows both, though neither changes its bits. Measured over `window` seconds
    from /proc/stat, less this process's own CPU time (Linux; None elsewhere)."""
    others = _cores_busy_with_others(window)
    cores = os.cpu_count() or 1
    if others is None or others + threads <= cores + 0.5:
        return None
    return (f"other processes keep {others:.1f} of this machine's {cores} cores busy and this "
            f"training adds {threads} thread(s): they share the cores (same bits; OpenMP: "
            f"{wait_policy()})")


def _cores_busy_with_others(window: float) -> float | None:
    import time

    def busy() -> tuple[int, float] | None:
        try:
            fields = open("/proc/stat").readline().split()[1:]
        except OSError:
            return None
        ticks = [int(f) for f in fields]
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
        return sum(ticks) - idle, time.process_time()

    first = busy()
    if first is None:
        return None
    time.sleep(window)
    second = busy()
    hertz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    cpu = (second[0] - first[0]) / hertz - (second[1] - first[1])
    return max(0.0, cpu / window)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type
