"""The training harness keeps the determinism contract: same manifest => same bits; a killed run
resumes to the bits of an uninterrupted one; seeds split into init and data streams; the index
written during training is the order function's."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from data_index import StepIndex
from zoo_common.errors import ZooError
from training.sweep import plan_commands, train_family
from zoo.config.names import RunId
from zoo.store.store import Store

from micro_family import write_manifest

ROOT = Path(__file__).resolve().parents[1]


def _weights(store: Store, run_id: RunId) -> dict[int, dict]:
    run = store.run(run_id)
    return {s: run.checkpoint_manifest(s)["tensors"] for s in run.checkpoint_steps()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The micro family trained once, uninterrupted."""
    folder = tmp_path_factory.mktemp("reference")
    manifest = write_manifest(folder)
    store = Store.open(str(folder / "store"))
    train_family(manifest, store=store, threads=2, progress=False)
    return manifest, store


def test_same_manifest_twice_gives_identical_weights_at_every_step(reference, tmp_path):
    manifest, store = reference
    again = Store.open(str(tmp_path / "store"))
    train_family(manifest, store=again, threads=2, progress=False)
    for run_id in store.runs():
        ours, theirs = _weights(store, run_id), _weights(again, run_id)
        assert list(ours) == list(theirs) and len(ours) > 3
        assert ours == theirs, run_id


def test_interrupted_then_resumed_equals_uninterrupted(reference, tmp_path):
    manifest, store = reference
    partial = Store.open(str(tmp_path / "store"))
    train_family(manifest, store=partial, threads=2, progress=False, stop_after_step=13)
    run_id = RunId("micro", "1l32", 1)
    assert partial.run(run_id).read_json("status.json")["finished"] is False
    outcomes = train_family(manifest, store=partial, threads=2, progress=False)
    assert outcomes[0].status == "resumed" and outcomes[0].first_step == 13  # keyframed at its stop
    assert _weights(partial, run_id) == _weights(store, run_id)
    StepIndex.open(partial.run(run_id).index_location).verify()


def test_kill_9_mid_run_then_resume_is_bit_identical(reference, tmp_path):
    manifest, store = reference
    target = tmp_path / "store"
    proc = _start_training(manifest, target, hold_after_step=11)
    _wait_until_held(proc, 11)  # keyframe 8 written; steps 9-11 and their writes in flight or done
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    resumed = Store.open(str(target))
    train_family(manifest, store=resumed, only=["1l32/1"], threads=2, progress=False)
    run_id = RunId("micro", "1l32", 1)
    assert _weights(resumed, run_id) == _weights(store, run_id)


def test_finished_runs_are_skipped(reference):
    manifest, store = reference
    outcomes = train_family(manifest, store=store, progress=False)
    assert {o.status for o in outcomes} == {"skipped"}


def test_changed_manifest_refuses_to_resume_naming_the_field(reference, tmp_path):
    manifest, store = reference
    changed = write_manifest(tmp_path, optimizer={**_base()["optimizer"], "lr": 1e-2})
    with pytest.raises(ZooError, match="optimizer.lr"):
        train_family(changed, store=store, progress=False)


def test_data_seed_changes_order_not_init(tmp_path):
    manifest = write_manifest(tmp_path, seeds=[1, {"seed": 2, "init_seed": 1}], steps=2,
                              checkpoints={"log_spaced_until": 2, "every": 2, "keyframe_every": 2})
    store = Store.open(str(tmp_path / "store"))
    train_family(manifest, store=store, threads=2, progress=False)
    a, b = _weights(store, RunId("micro", "1l32", 1)), _weights(store, RunId("micro", "1l32", 2))
    assert a[0] == b[0]
    assert a[1] != b[1]


def test_index_written_during_training_is_the_order_function(reference):
    _, store = reference
    for run_id in store.runs():
        index = StepIndex.open(store.run(run_id).index_location)
        assert (index.first_step, index.last_step) == (1, 24)
        index.verify()


def test_logs_gathered_for_a_keyframe_that_failed_to_stage_are_still_written(
        reference, tmp_path, monkeypatch):
    """At a keyframe the index's and metrics' parts are committed with it. When staging it fails
    (here a second Ctrl-C while it encodes), they are written on their own: the logs keep every
    trained step, the store stays valid, and the run resumes to the bits of an uninterrupted one."""
    from zoo.store.run_metrics import read_run_metrics
    from zoo.store.run_store import RunStore
    from zoo.store.verify import verify_store

    manifest, store = reference
    partial = Store.open(str(tmp_path / "store"))
    original = RunStore.write_keyframe

    def interrupted_at_16(self, step, **kwargs):
        if step == 16:
            raise KeyboardInterrupt("a second Ctrl-C while the keyframe encodes")
        return original(self, step, **kwargs)

    monkeypatch.setattr(RunStore, "write_keyframe", interrupted_at_16)
    with pytest.raises(KeyboardInterrupt):
        train_family(manifest, store=partial, only=["1l32/1"], threads=2, progress=False)
    monkeypatch.undo()
    run_id = RunId("micro", "1l32", 1)
    run = partial.run(run_id)
    assert run.keyframe_steps() == [0, 8]
    assert StepIndex.open(run.index_location).last_step == 16
    assert read_run_metrics(run).column("step").to_pylist() == list(range(1, 17))
    assert verify_store(partial).ok
    outcome, = train_family(manifest, store=partial, only=["1l32/1"], threads=2, progress=False)
    assert outcome.status == "resumed" and outcome.first_step == 8
    assert _weights(partial, run_id) == _weights(store, run_id)


def test_run_records_config_environment_and_metrics(reference):
    from zoo.store.run_metrics import read_run_metrics

    _, store = reference
    run = store.run(RunId("micro", "1l32", 1))
    record, env = run.read_json("run.json"), run.read_json("environment.json")
    assert record["config"]["optimizer"]["lr"] == 3e-3 and len(record["config_hash"]) == 64
    assert env["threads"] == 2 and env["torch"] == torch.__version__
    metrics = read_run_metrics(run)
    assert metrics.column("step").to_pylist() == list(range(1, 25))
    losses = metrics.column("loss").to_pylist()
    assert losses[-1] < losses[0]


def test_plan_prints_one_command_per_run_or_per_stack(reference, tmp_path, monkeypatch):
    manifest, store = reference
    commands = plan_commands(manifest, store_url=store.url)
    assert [c.split("--only ")[1].split()[0] for c in commands] == ["1l32/1", "1l32/2"]
    # with stacking asked for, the seeds of a size are one command that stacks them
    stacked, = plan_commands(manifest, store_url=store.url, stack=True)
    assert "--only 1l32/1 --only 1l32/2 " in stacked and stacked.endswith(" --stack")
    # several processes per run: no stacks
    assert len(plan_commands(manifest, store_url=store.url, nproc=2, stack=True)) == 2
    # a scheduler's job may start elsewhere: relative manifest and store paths become absolute
    monkeypatch.chdir(Path(manifest).parent)
    relative = plan_commands(Path(manifest).name, store_url="./zoo-store")
    assert relative[0].startswith(f"zoo train {manifest} --only 1l32/1 --store ")
    assert relative[0].split("--store ")[1] == str(Path(manifest).parent / "zoo-store")
    assert plan_commands("tiny", store_url="s3://bucket/zoo")[0] == (
        "zoo train tiny --only 1l64/1 --store s3://bucket/zoo")
    # the superposition model stacks by default (measured faster; benchmarks/RESULTS.md)
    assert plan_commands("superposition", store_url="s3://b/z")[0].count("--only") == 5


def test_only_rejects_unknown_runs_listing_valid_ones(reference):
    manifest, store = reference
    with pytest.raises(ZooError, match="valid: 1l32/1, 1l32/2"):
        train_family(manifest, store=store, only=["9l9/1"], progress=False)


def _start_training(manifest: str, target: Path, *, hold_after_step: int) -> subprocess.Popen:
    """`python -m training` on run 1l32/1 of the micro family, as a separate process that waits
    after `hold_after_step` for a signal."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "training", manifest, "--store", str(target), "--only", "1l32/1",
         "--threads", "2", "--quiet", "--hold-after-step", str(hold_after_step)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_until_held(proc: subprocess.Popen, step: int) -> None:
    """Read the run's stderr until it says it holds after `step` (it then waits for a signal)."""
    said = []
    for line in proc.stderr:
        said.append(line)
        if f"holding after step {step}" in line:
            return
    raise AssertionError(f"the run never held after step {step}; stderr: {''.join(said)}")


def _base():
    from micro_family import BASE

    return BASE


def test_ctrl_c_keyframes_the_step_it_stops_after_and_goes_on_from_there(reference, tmp_path):
    """A graceful stop (Ctrl-C here; SIGTERM alike) after step 11, where no keyframe is scheduled
    (keyframes every 8): step 11 is keyframed, the same command goes on from step 11, and the run
    ends bit-identical to an uninterrupted one."""
    manifest, store = reference
    target = tmp_path / "store"
    proc = _start_training(manifest, target, hold_after_step=11)
    _wait_until_held(proc, 11)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopped after step 11, and keyframed it: the same command goes on from step 11" in err
    assert "Traceback" not in err
    from zoo.store.verify import verify_store

    partial = Store.open(str(target))
    assert verify_store(partial).ok
    run_id = RunId("micro", "1l32", 1)
    assert partial.run(run_id).keyframe_steps() == [0, 8, 11]
    [outcome] = train_family(manifest, store=partial, only=["1l32/1"], threads=2, progress=False)
    assert outcome.status == "resumed" and outcome.first_step == 11
    assert _weights(partial, run_id) == _weights(store, run_id)


def test_sigterm_is_a_graceful_stop_too(reference, tmp_path):
    manifest, _ = reference
    target = tmp_path / "store"
    proc = _start_training(manifest, target, hold_after_step=5)
    _wait_until_held(proc, 5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "stopped after step 5" in err, err
    assert Store.open(str(target)).run(RunId("micro", "1l32", 1)).keyframe_steps() == [0, 5]
