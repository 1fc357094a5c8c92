"""Beyond one process, the determinism contract still holds: 2-process training (torchrun, gloo on
loopback, 1 thread per rank) equals itself bit for bit and records the 1-process data index;
world-size-invariant numerics give the bits of 1 process on 2; a killed rank stops the run without
a hang and `zoo train` resumes it; concurrent sweeps into one S3 store leave it verifying clean."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from micro_family import write_manifest

from data_index import StepIndex
from zoo_common.errors import ZooError
from training.sweep import train_family
from zoo.config.names import RunId
from zoo.engine.step_replay import replay_run
from zoo.store.store import Store

ROOT = Path(__file__).resolve().parents[1]
RUN = RunId("micro", "1l32", 1)
TIMEOUT = 240  # no launch may hang the suite: every subprocess wait is bounded


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
            "ZOO_DIST_TIMEOUT": "60", **extra}


def _torchrun(manifest: str, store: Path | str, *args: str, nproc: int = 2) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", "--max-restarts=0", "-m", "training", manifest,
            "--store", str(store), "--quiet", *args]


def _zoo_train(manifest: str, store: Path | str, *args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from zoo.cli import main; sys.exit(main())",
            "train", manifest, "--store", str(store), "--quiet", *args]


def _run(command: list[str], **env) -> subprocess.CompletedProcess:
    done = subprocess.run(command, check=False, env=_env(**env), capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _weights(store: Store, run_id: RunId = RUN) -> dict[int, dict]:
    run = store.run(run_id)
    return {s: run.checkpoint_manifest(s)["tensors"] for s in run.checkpoint_steps()}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("distributed")


@pytest.fixture(scope="module")
def plain(folder):
    """The micro family's seed 1 trained on 1 process (1 thread) and twice on 2 processes."""
    manifest = write_manifest(folder, seeds=[1])
    single = Store.open(str(folder / "single"))
    train_family(manifest, store=single, threads=1, progress=False)
    for name in ("ddp-a", "ddp-b"):
        _run(_torchrun(manifest, folder / name, "--only", "1l32/1"))
    return manifest, single, Store.open(str(folder / "ddp-a")), Store.open(str(folder / "ddp-b"))


def test_two_processes_rerun_bit_identical(plain):
    _, _, a, b = plain
    ours, theirs = _weights(a), _weights(b)
    assert len(ours) > 3 and ours == theirs
    env = a.run(RUN).read_json("environment.json")
    assert (env["world_size"], env["threads"], env["backend"]) == (2, 1, "gloo")


def test_two_process_index_equals_one_process_index(plain):
    _, single, a, _ = plain
    one, two = (StepIndex.open(s.run(RUN).index_location) for s in (single, a))
    assert (two.first_step, two.last_step) == (one.first_step, one.last_step) == (1, 24)
    for step in range(1, 25):
        assert list(two.batch_ids(step)) == list(one.batch_ids(step)), step
    two.verify()


def test_replay_on_one_process_reports_the_world_size_difference(plain):
    _, _, a, _ = plain
    report = replay_run(a.run(RUN), 12, store=a, progress=False)
    assert report.compared and not report.exact
    assert report.environment_differences["world_size"] == (2, 1)
    assert "world_size 2 -> 1" in report.verdict() and report.verdict().startswith("DIFFERS")


@pytest.fixture(scope="module")
def invariant(folder):
    """The micro family with world-size-invariant numerics, trained on 1 process."""
    manifest = write_manifest(folder, "invariant.yaml", seeds=[1], micro_batch_size=2)
    single = Store.open(str(folder / "inv-single"))
    train_family(manifest, store=single, threads=2, progress=False)  # invariant mode: 1 thread
    return manifest, single


def test_invariant_mode_two_processes_equal_one_and_replay_exactly(invariant, folder):
    manifest, single = invariant
    _run(_zoo_train(manifest, folder / "inv-ddp", "--only", "1l32/1", "--nproc", "2"))
    two = Store.open(str(folder / "inv-ddp"))
    assert two.run(RUN).read_json("run.json")["config"]["micro_batch_size"] == 2
    assert single.run(RUN).read_json("environment.json")["threads"] == 1
    assert two.run(RUN).read_json("environment.json")["world_size"] == 2
    ours, theirs = _weights(two), _weights(single)
    assert len(ours) > 3 and ours == theirs
    report = replay_run(two.run(RUN), 18, store=two, progress=False)
    assert report.verdict().startswith("EXACT"), report.verdict()


def test_invariant_run_resumes_on_another_world_size(invariant, folder):
    manifest, single = invariant
    partial = Store.open(str(folder / "inv-partial"))
    train_family(manifest, store=partial, progress=False, stop_after_step=13)  # 1 process
    _run(_zoo_train(manifest, folder / "inv-partial", "--only", "1l32/1", "--nproc", "2"))
    assert partial.run(RUN).read_json("status.json")["finished"] is True
    assert _weights(partial) == _weights(single)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(c) for c in text]
    return found


def test_killed_rank_stops_the_run_and_zoo_train_resumes_it(plain, folder):
    manifest, _, reference, _ = plain
    target = folder / "killed"
    proc = subprocess.Popen(_torchrun(manifest, target, "--only", "1l32/1", "--hold-after-step",
                                      "11"), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    said = []
    for line in proc.stderr:  # both ranks wait after step 11 (keyframe 8 is written) for a signal
        said.append(line)
        if "holding after step 11" in line:
            break
    else:
        raise AssertionError("the run never held after step 11: " + "".join(said)[-2000:])
    workers = sorted(_children(proc.pid))  # started in rank order
    assert len(workers) == 2, workers
    os.kill(workers[1], signal.SIGKILL)
    proc.communicate(timeout=120)  # the other rank is stopped too: no hang
    assert proc.returncode != 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    partial = Store.open(str(target))
    assert partial.run(RUN).read_json("status.json")["finished"] is False
    with pytest.raises(ZooError, match="trained on 2 process"):  # bits depend on the world size
        train_family(manifest, store=partial, progress=False)
    done = _run(_zoo_train(manifest, target, "--only", "1l32/1", "--nproc", "2"))
    assert _weights(partial) == _weights(reference), done.stderr[-2000:]
    StepIndex.open(partial.run(RUN).index_location).verify()


def test_two_sweeps_into_one_s3_store_at_once_verify_clean(folder):
    from s3_server import s3_bucket

    from zoo.store.verify import verify_store

    short = {"steps": 8, "checkpoints": {"log_spaced_until": 2, "every": 4, "keyframe_every": 4}}
    # seeds 1 and 3 share their init: both sweeps write the same step-0 blobs at the same time
    manifest = write_manifest(folder, "s3.yaml", seeds=[1, 2, {"seed": 3, "init_seed": 1}, 4],
                              **short)
    with s3_bucket() as (url, options):
        endpoint = options["client_kwargs"]["endpoint_url"]
        creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": "eu-west-1"}
        sweeps = [
            subprocess.Popen(_zoo_train(manifest, url, *only), env=_env(**creds),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for only in (("--only", "1l32/1", "--only", "1l32/2"),
                         ("--only", "1l32/3", "--only", "1l32/4"))
        ]
        for sweep in sweeps:
            _, err = sweep.communicate(timeout=TIMEOUT)
            assert sweep.returncode == 0, err[-3000:]
        store = Store.open(url, storage_options=options)
        assert sorted(r.seed for r in store.runs()) == [1, 2, 3, 4]
        for run_id in store.runs():
            assert store.run(run_id).read_json("status.json")["finished"] is True
        report = verify_store(store)
        assert report.ok, report
        assert _weights(store, RunId("micro", "1l32", 1))[0] == \
            _weights(store, RunId("micro", "1l32", 3))[0]
