"""Beyond one process: the world a run trains in, and launching it with torchrun.

We carry no transport of our own: `torchrun` (torch.distributed.run) starts the processes and sets
RANK / WORLD_SIZE / LOCAL_RANK; `world_from_env` joins them with gloo on CPU or nccl on GPU. Each
rank trains on its fixed slice of the global batch (data_index.rank_slice); only rank 0 writes to
the store. The few collectives the loop needs beyond the training step itself (rank 0's decision
to start / resume / skip, a joint stop at a step boundary, per-rank RNG states for keyframes) are
here, as tensors only: nothing is pickled, not even on the wire.
"""
from __future__ import annotations

import datetime
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from zoo_common.errors import ZooError

DEFAULT_TIMEOUT_S = 600.0  # a rank waiting this long for its peers gives up (ZOO_DIST_TIMEOUT)


@dataclass(frozen=True)
class World:
    """This process's place among the processes of a run (world_size 1: a plain single process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None when no process group is used

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def device(self, requested: str) -> str:
        """`cuda` means this rank's own GPU (cuda:LOCAL_RANK) in a multi-process run."""
        if self.distributed and requested == "cuda":
            return f"cuda:{self.local_rank}"
        return requested


SINGLE = World()


def world_from_env(device: str = "cpu") -> World:
    """Join the process group torchrun describes in the environment; SINGLE when there is none."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return SINGLE
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        timeout = float(os.environ.get("ZOO_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
    return World(rank=rank, world_size=world_size, local_rank=local_rank, backend=backend)


def shutdown(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def check_world_size(cfg, world_size: int) -> None:
    """The global batch must split evenly: into ranks, and (invariant mode) into micro-batches."""
    unit = world_size * (cfg.micro_batch_size or 1)
    if isinstance(cfg.batch_size, str):  # "full": checked once the corpus resolves it
        return
    if cfg.batch_size % unit:
        per = cfg.micro_batch_size or 1
        valid = [w for w in range(1, cfg.batch_size + 1) if cfg.batch_size % (w * per) == 0]
        what = f"{world_size} processes x micro_batch_size {per}" if cfg.micro_batch_size else \
            f"{world_size} processes"
        raise ZooError(f"{cfg.model_name}: batch_size {cfg.batch_size} does not split over {what}; "
                       f"valid process counts: {valid}")


# ------------------------------------------------------------------ collectives (tensors only)

def _comm_device(world: World) -> torch.device:
    return torch.device(f"cuda:{world.local_rank}") if world.backend == "nccl" else torch.device("cpu")


def broadcast_ints(world: World, values: list[int]) -> list[int]:
    """Rank 0's `values` on every rank (others pass placeholders of the same length)."""
    if not world.distributed:
        return values
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.int64, device=_comm_device(world))
    dist.broadcast(tensor, src=0)
    return [int(v) for v in tensor.cpu()]


def any_rank(world: World, flag: bool) -> bool:
    """True on every rank when it is true on any: all ranks stop at the same step boundary."""
    if not world.distributed:
        return flag
    import torch.distributed as dist

    tensor = torch.tensor([int(flag)], dtype=torch.int64, device=_comm_device(world))
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def barrier(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        dist.barrier()


def gather_rng_states(world: World, state: dict) -> dict:
    """Every rank's RNG states on every rank: rank 0's at the top, all under "per_rank"."""
    if not world.distributed:
        return state
    import torch.distributed as dist

    device = _comm_device(world)
    gathered: list[dict] = [{} for _ in range(world.world_size)]
    for key in sorted(state):
        values = state[key] if isinstance(state[key], list) else [state[key]]
        per_rank_values: list[list[torch.Tensor]] = [[] for _ in range(world.world_size)]
        for value in values:  # RNG states have the same size on every rank of one run
            parts = [torch.empty_like(value, device=device) for _ in range(world.world_size)]
            dist.all_gather(parts, value.to(device))
            for rank, part in enumerate(parts):
                per_rank_values[rank].append(part.cpu())
        for rank in range(world.world_size):
            got = per_rank_values[rank]
            gathered[rank][key] = got if isinstance(state[key], list) else got[0]
    return {**gathered[0], "per_rank": gathered}


# ------------------------------------------------------------------ launching

def launch_command(manifest: str, *, nproc: int, store_url: str, only: list[str] | None = None,
                   threads: int | None = None, device: str = "cpu", quiet: bool = False,
                   stop_after_step: int | None = None,
                   hold_after_step: int | None = None) -> list[str]:
    """The torchrun command line that trains `manifest` on `nproc` processes of this machine."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc}", "--max-restarts=0", "-m", "training", manifest,
               "--store", store_url, "--device", device]
    for entry in only or []:
        command += ["--only", entry]
    if threads is not None:
        command += ["--threads", str(threads)]
    if quiet:
        command.append("--quiet")
    if stop_after_step is not None:
        command += ["--stop-after-step", str(stop_after_step)]
    if hold_after_step is not None:
        command += ["--hold-after-step", str(hold_after_step)]
    return command


def launch(manifest: str, *, nproc: int, store_url: str, only: list[str] | None = None,
           threads: int | None = None, device: str = "cpu", quiet: bool = False,
           stop_after_step: int | None = None, hold_after_step: int | None = None) -> int:
    """Run torchrun as a child process and return its exit status (what `zoo train --nproc` does).

    torchrun watches its workers: when one dies, it stops the others, so nothing hangs; every
    keyframe written before stays valid and the same command resumes from the last one.
    """
    if nproc < 1:
        raise ZooError(f"--nproc must be >= 1, got {nproc}")
    if os.environ.get("WORLD_SIZE") not in (None, "1"):
        raise ZooError("--nproc was given inside a torchrun worker; use one launcher, not two")
    command = launch_command(manifest, nproc=nproc, store_url=store_url, only=only,
                             threads=threads, device=device, quiet=quiet,
                             stop_after_step=stop_after_step, hold_after_step=hold_after_step)
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    env.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default too; --threads overrides per rank
    proc = subprocess.Popen(command, env=env)
    while True:
        try:
            code = proc.wait()
            break
        except KeyboardInterrupt:  # torchrun and its workers got the same Ctrl-C: let them finish
            continue               # the step in flight and stop together
    if code != 0:
        print(f"zoo: training on {nproc} processes stopped (torchrun exit status {code}); what was "
              f"written is valid: run the same command to resume from the last keyframe",
              file=sys.stderr)
    return code
