"""OpenMP threads that spin only briefly when they wait, so that two trainings on one machine
share its cores.

torch's CPU kernels run on an OpenMP pool (libgomp on Linux). By default a thread that reaches a
barrier first spins (up to 300,000 iterations) before it sleeps. Alone on a machine that is the
fastest choice; with two processes on the same cores, each spinning thread burns the core the
other process's thread needs to reach that barrier, and a small model's step is thousands of such
barriers. Measured on 2 cores (benchmarks/bench_concurrent.py, RESULTS.md): two `tiny` runs at
once took 1.6-2.3x the time of the same two in sequence with libgomp's default, 0.8x with a spin
count of 1,000, 0.7x with no spinning at all (OMP_WAIT_POLICY=PASSIVE), which costs a run alone
about 20% where 1,000 spins cost about 5%. How long a thread spins never changes how work is
split, so every result stays bit-identical (tested).

The runtime reads its environment once, when torch loads it: `zoo` sets GOMP_SPINCOUNT=1000
(libgomp) and KMP_BLOCKTIME=1 (LLVM/Intel OpenMP, in ms; not measured here) on import, before
torch, unless the user chose a policy (OMP_WAIT_POLICY, GOMP_SPINCOUNT or KMP_BLOCKTIME is set).
A process that imported torch first keeps what its runtime read then.
"""
from __future__ import annotations

import os
import sys

CHOSEN_BY_USER = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
SHORT_SPIN = {"GOMP_SPINCOUNT": "1000", "KMP_BLOCKTIME": "1"}


def prefer_short_spinning() -> None:
    """Short spinning for this process and its children, unless a policy is already chosen."""
    if "torch" in sys.modules or any(name in os.environ for name in CHOSEN_BY_USER):
        return
    os.environ.update(SHORT_SPIN)


def wait_policy() -> str:
    """The OpenMP wait settings this process's environment gives, for the record."""
    chosen = [f"{name}={os.environ[name]}" for name in CHOSEN_BY_USER if name in os.environ]
    return " ".join(chosen) or "runtime default"
