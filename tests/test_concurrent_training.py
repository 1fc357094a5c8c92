"""Two trainings at once on one machine give each run the bits it gets alone, whatever OpenMP's
wait policy (zoo sets a short spin count before torch loads: zoo_common/openmp.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from micro_family import write_manifest


def _train(manifest: str, store: Path, seed: int, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "training", manifest, "--only", f"1l32/{seed}",
                             "--store", str(store), "--quiet", "--threads", "2"], env=env,
                            stderr=subprocess.PIPE, text=True)


def _checkpoints(store: Path, seed: int) -> dict:
    folder = store / "runs" / "micro" / "1l32" / f"seed-{seed}" / "checkpoints"
    return {p.name: json.loads(p.read_text())["tensors"] for p in sorted(folder.glob("*.json"))}


def test_two_trainings_at_once_give_the_bits_of_one_alone(tmp_path):
    manifest = write_manifest(tmp_path, steps=12)
    base = {k: v for k, v in os.environ.items()
            if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    base["ZOO_CACHE"] = str(tmp_path / "cache")
    spinning = {**base, "OMP_WAIT_POLICY": "ACTIVE"}  # a user's choice: zoo leaves it alone
    alone = _train(manifest, tmp_path / "alone", 1, spinning)
    assert alone.wait() == 0, alone.stderr.read()
    together = [_train(manifest, tmp_path / "together", seed, base) for seed in (1, 2)]
    for proc in together:
        assert proc.wait() == 0, proc.stderr.read()
    assert _checkpoints(tmp_path / "together", 1) == _checkpoints(tmp_path / "alone", 1)
    assert _checkpoints(tmp_path / "together", 2)  # trained, beside it
    recorded = json.loads((tmp_path / "together" / "runs" / "micro" / "1l32" / "seed-1" /
                           "environment.json").read_text())
    assert recorded["omp_wait_policy"] == "GOMP_SPINCOUNT=1000 KMP_BLOCKTIME=1"


def test_zoo_leaves_a_chosen_policy_alone_and_sets_none_after_torch():
    code = ("import os, sys\n"
            "import zoo\n"
            "print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["1000", "None"], out.stderr
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "PASSIVE"},
                         capture_output=True, text=True)
    assert out.stdout.split() == ["None", "PASSIVE"], out.stderr
    out = subprocess.run([sys.executable, "-c", "import torch\n" + code], env=env,
                         capture_output=True, text=True)
    assert out.stdout.split() == ["None", "None"], out.stderr  # too late to matter: not set
