"""Two trainings at once: the same two `tiny` runs trained one after the other, then at the same
time, each as its own `zoo train` process (what a researcher does to run two seeds side by side),
side by side in one invocation.

Prints, per OpenMP wait policy, the total wall time of each way and their ratio (target: at most
1.1x), and checks that every stored checkpoint of the concurrent runs is bit-identical to the same
run trained alone (content-addressed blobs: equal manifests mean equal bits).

- `zoo`: what `zoo` sets before torch loads unless the user chose (GOMP_SPINCOUNT=1000: a thread
  waiting at a barrier spins briefly, then sleeps instead of burning the core the other process
  needs);
- `passive`: OMP_WAIT_POLICY=PASSIVE, no spinning at all;
- `default`: libgomp's own default (spins up to 300,000 times, then sleeps): how it was before.

    python benchmarks/bench_concurrent.py [--runs 2l128/1 2l128/2] [--policies passive default]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# policy -> OpenMP environment ("" : set but empty, so zoo chooses nothing and libgomp keeps its
# own default; libgomp warns that "" is invalid and ignores it)
POLICIES = {
    "zoo": {},  # what `zoo` chooses: GOMP_SPINCOUNT=1000 (zoo_common/openmp.py)
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "default": {"OMP_WAIT_POLICY": ""},
}


def _command(store: Path, run: str) -> list[str]:
    return [sys.executable, "-m", "training", "tiny", "--only", run, "--store", str(store), "--quiet"]


def _environment(policy: str, cache: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                                                           "KMP_BLOCKTIME")}
    return {**env, **POLICIES[policy], "ZOO_CACHE": str(cache)}


def _train(store: Path, runs: list[str], env: dict, *, together: bool) -> float:
    started = time.perf_counter()
    if together:
        procs = [subprocess.Popen(_command(store / run.replace("/", "-"), run), env=env)
                 for run in runs]
        codes = [p.wait() for p in procs]
    else:
        codes = [subprocess.call(_command(store / run.replace("/", "-"), run), env=env)
                 for run in runs]
    if any(codes):
        raise SystemExit(f"a training failed: exit codes {codes}")
    return time.perf_counter() - started


def _manifests(store: Path) -> dict[str, dict]:
    """Every checkpoint manifest's tensor references, by run-relative path."""
    found = {}
    for path in sorted(store.rglob("checkpoints/step-*.json")):
        found[str(path.relative_to(store))] = json.loads(path.read_text())["tensors"]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["2l128/1", "2l128/2"])
    parser.add_argument("--policies", nargs="+", default=["zoo", "passive", "default"],
                        choices=sorted(POLICIES))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"
        # the corpus is prepared once, outside the timings
        subprocess.run(_command(tmp / "warmup", args.runs[0]) + ["--stop-after-step", "1"],
                       env=_environment("passive", cache), check=True)
        for policy in args.policies:
            env = _environment(policy, cache)
            alone = _train(tmp / f"{policy}-alone", args.runs, env, together=False)
            together = _train(tmp / f"{policy}-together", args.runs, env, together=True)
            same = (_manifests(tmp / f"{policy}-alone") == _manifests(tmp / f"{policy}-together")
                    and bool(_manifests(tmp / f"{policy}-alone")))
            rows.append((policy, alone, together, same))
            print(f"{policy}: one after the other {alone:.1f} s, at the same time "
                  f"{together:.1f} s, ratio {together / alone:.2f}, bits identical: {same}",
                  flush=True)
        across = len({json.dumps(_manifests(tmp / f"{policy}-alone"), sort_keys=True)
                      for policy in args.policies}) == 1
    print(f"\n{len(args.runs)} runs ({', '.join(args.runs)} of tiny), {os.cpu_count()} cores; "
          f"the same bits under every policy: {across}")
    print("| OpenMP wait policy | one after the other | at the same time | ratio | same bits |")
    print("|---|---:|---:|---:|---|")
    for policy, alone, together, same in rows:
        print(f"| {policy} | {alone:.1f} s | {together:.1f} s | {together / alone:.2f}x | {same} |")
    return 0 if across and all(same for *_, same in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
