"""Stacked training (training/stacked.py): a family's seeds trained together as one computation
are the same runs, bit for bit, as the seeds trained one at a time; their stored steps replay
EXACT; a kill -9 in the middle resumes every member to the same bits."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from data_index import StepIndex
from training.session import Controls
from training.stacked import stack_groups
from training.sweep import train_family
from zoo.config.manifest import load_manifest
from zoo.config.names import RunId
from zoo.engine.step_replay import check_all
from zoo.store.run_metrics import read_run_metrics
from zoo.store.store import Store

from micro_family import write_grokking_manifest, write_manifest

ROOT = Path(__file__).resolve().parents[1]
# two sizes of one shape (they stack together) and one of another (a stack of its own)
SIZES = [{"name": "a", "layers": 1, "width": 32, "heads": 2, "mlp_width": 64},
         {"name": "b", "layers": 1, "width": 32, "heads": 2, "mlp_width": 64},
         {"name": "c", "layers": 2, "width": 32, "heads": 2, "mlp_width": 64}]


def _stored(store: Store, run_id: RunId) -> dict:
    """Every bit a run stored: checkpoint and keyframe tensors (content hashes), the data index,
    and the metrics a lone run records (all but wall time)."""
    run = store.run(run_id)
    keyframes = {}
    for step in run.keyframe_steps():
        manifest = run.keyframe_manifest(step)
        keyframes[step] = {part: manifest[part] for part in ("model", "optimizer", "scheduler", "rng")}
    metrics = read_run_metrics(run)
    return {
        "checkpoints": {s: run.checkpoint_manifest(s)["tensors"] for s in run.checkpoint_steps()},
        "keyframes": keyframes,
        "index": [StepIndex.open(run.index_location).batch_ids(s).tolist()
                  for s in range(1, run.read_json("status.json")["last_step"] + 1)],
        "metrics": {c: metrics.column(c).to_pylist() for c in ("step", "loss", "lr", "grad_norm")},
    }


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    """The micro family with three sizes and three seeds, trained stacked and one at a time."""
    folder = tmp_path_factory.mktemp("stacked")
    manifest = write_manifest(folder, sizes=SIZES, seeds=[1, 2, 3])
    stacked = Store.open(str(folder / "stacked"))
    train_family(manifest, store=stacked, threads=2, progress=False, stack=True)
    alone = Store.open(str(folder / "alone"))
    train_family(manifest, store=alone, threads=2, progress=False)
    return manifest, stacked, alone


def test_sizes_are_stacked_by_shape(family):
    manifest, _, _ = family
    groups = stack_groups(load_manifest(manifest).runs(), Controls(stack=True))
    assert [[(c.size.name, c.seed.seed) for c in members] for members, _ in groups] == [
        [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2), ("b", 3)],
        [("c", 1), ("c", 2), ("c", 3)]]
    lone = stack_groups(load_manifest(manifest).runs(), Controls(stack=False))
    assert len(lone) == 9 and all(reason == "--no-stack" for _, reason in lone)
    # by default a transformer trains alone, and the reason says how to stack it
    default = stack_groups(load_manifest(manifest).runs(), Controls())
    assert len(default) == 9 and all("--stack" in reason for _, reason in default)


def test_stacked_runs_are_bit_identical_to_runs_trained_alone(family):
    _, stacked, alone = family
    run_ids = sorted(alone.runs(), key=lambda r: r.key)
    assert len(run_ids) == 9
    for run_id in run_ids:
        ours, theirs = _stored(stacked, run_id), _stored(alone, run_id)
        assert len(ours["checkpoints"]) > 3 and len(ours["keyframes"]) >= 3
        assert ours == theirs, run_id


def test_a_stacked_run_records_its_step_function_and_members(family):
    _, stacked, alone = family
    run = stacked.run(RunId("micro", "c", 2))
    record = run.keyframe_manifest(run.keyframe_steps()[-1])["extra"]["environment"]["stacked"]
    assert record["step_function"].startswith("zoo.engine.stacked_step")
    assert record["members"] == [f"micro-c/seed-{s}" for s in (1, 2, 3)]
    lone = alone.run(RunId("micro", "c", 2))
    assert "stacked" not in lone.keyframe_manifest(lone.keyframe_steps()[-1])["extra"]["environment"]


def test_every_stored_step_of_every_stacked_seed_replays_exact(family):
    _, stacked, _ = family
    for seed in (1, 2, 3):
        reports = check_all(stacked.run(RunId("micro", "b", seed)), store=stacked)
        assert len(reports) >= 6
        assert all(r.compared and r.exact for r in reports), [r.verdict() for r in reports]


def test_kill_9_of_a_stacked_training_resumes_every_member_bit_identically(family, tmp_path):
    manifest, stacked, _ = family
    target = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "training", manifest, "--store", str(target), "--only", "c",
         "--threads", "2", "--stack", "--hold-after-step", "11"],  # keyframe 8 written; 9-11 in flight
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    said = []
    for line in proc.stderr:
        said.append(line)
        if "holding after step 11" in line:
            break
    else:
        raise AssertionError("".join(said))
    assert any("stacked: micro-c seed 1,2,3" in line for line in said), said
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    resumed = Store.open(str(target))
    # one member a keyframe behind the others, as a kill between two members' commits leaves it
    resumed.run(RunId("micro", "c", 3)).delete_after(0)
    outcomes = train_family(manifest, store=resumed, only=["c"], threads=2, progress=False,
                            stack=True)
    assert [o.status for o in outcomes] == ["resumed"] * 3 or [o.first_step for o in outcomes] == [0] * 3
    for seed in (1, 2, 3):
        run_id = RunId("micro", "c", seed)
        assert _stored(resumed, run_id) == _stored(stacked, run_id), run_id


def test_a_stacked_task_run_with_a_loss_mask_is_bit_identical_to_alone(tmp_path):
    """The grokking family in miniature: full batch, loss on the answer token only."""
    manifest = write_grokking_manifest(tmp_path, seeds=[1, 2, 3])
    stacked, alone = Store.open(str(tmp_path / "s")), Store.open(str(tmp_path / "a"))
    train_family(manifest, store=stacked, threads=2, progress=False, stack=True)
    train_family(manifest, store=alone, threads=2, progress=False)
    for seed in (1, 2, 3):
        run_id = RunId("gmicro", "1l32", seed)
        assert _stored(stacked, run_id) == _stored(alone, run_id)


def test_stacked_superposition_runs_are_bit_identical_to_alone(tmp_path):
    """Drawn feature vectors (a float batch) and the model's own reconstruction loss."""
    doc = {
        "family": "spstack", "architecture": "superposition",
        "sizes": [{"name": "n6m2", "width": 2}],
        "seeds": [1, 2, 3],
        "data": {"source": "builtin:sparse_features?n=6&sparsity=0.9&importance=0.8"},
        "optimizer": {"lr": 1e-2, "betas": [0.9, 0.999], "weight_decay": 0.0, "clip": 0},
        "schedule": {"kind": "constant", "warmup_steps": 0},
        "batch_size": 64, "steps": 30,
        "checkpoints": {"log_spaced_until": 4, "every": 10, "keyframe_every": 10},
    }
    path = tmp_path / "spstack.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    stacked, alone = Store.open(str(tmp_path / "s")), Store.open(str(tmp_path / "a"))
    train_family(str(path), store=stacked, threads=2, progress=False)  # stacked by default
    train_family(str(path), store=alone, threads=2, progress=False, stack=False)
    assert "stacked" in stacked.run(RunId("spstack", "n6m2", 1)).keyframe_manifest(30)["extra"][
        "environment"]
    for seed in (1, 2, 3):
        run_id = RunId("spstack", "n6m2", seed)
        assert _stored(stacked, run_id) == _stored(alone, run_id)


def test_several_processes_and_micro_batches_are_not_stacked_and_say_why(family):
    manifest, _, _ = family
    from dataclasses import replace

    from training.distributed import World

    runs = load_manifest(manifest).runs()
    several = Controls(stack=True, world=World(rank=0, world_size=2, local_rank=0, backend="gloo"))
    assert all(len(m) == 1 and "several processes" in r for m, r in stack_groups(runs, several))
    invariant = [replace(cfg, micro_batch_size=4) for cfg in runs]
    assert all("micro_batch_size" in r for _, r in stack_groups(invariant, Controls(stack=True)))


def test_the_stacked_layers_outside_vmap_are_the_plain_layers():
    """The Linear and LayerNorm replacements, called on one member, give torch's own values and
    gradients (their backward recomputes; inside vmap it is never called)."""
    import torch

    from zoo.engine.stacked_step import _layer_norm, _linear

    torch.manual_seed(0)
    for layer, call in ((torch.nn.Linear(8, 5), _linear), (torch.nn.LayerNorm(8), _layer_norm)):
        with torch.no_grad():
            for p in layer.parameters():
                p.add_(torch.randn_like(p))
        x = torch.randn(3, 4, 8, requires_grad=True)
        ours = call(layer, x)
        grads = torch.autograd.grad(ours.square().sum(), [x, *layer.parameters()])
        theirs = layer(x)
        expected = torch.autograd.grad(theirs.square().sum(), [x, *layer.parameters()])
        assert torch.equal(ours, theirs)
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads, expected))


def _superposition_manifest(folder: Path, **overrides) -> str:
    """The superposition family's shape (20 features in 5 dimensions, batches of 1024), 3 seeds."""
    doc = {
        "family": "spexact", "architecture": "superposition",
        "sizes": [{"name": "n20m5", "width": 5}], "seeds": [1, 2, 3],
        "data": {"source": "builtin:sparse_features?n=20&sparsity=0.9&importance=0.7"},
        "optimizer": {"lr": 1e-3, "betas": [0.9, 0.999], "weight_decay": 0.0, "clip": 0},
        "schedule": {"kind": "constant", "warmup_steps": 0},
        "batch_size": 1024, "steps": 12,
        "checkpoints": {"log_spaced_until": 4, "every": 6, "keyframe_every": 6}, **overrides,
    }
    path = folder / "spexact.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def test_a_stacked_step_that_would_differ_is_caught_and_the_runs_train_alone(tmp_path, monkeypatch,
                                                                             capsys):
    """With 2 threads, one batched GEMM splits the superposition model's [5, 1024] x [1024, 20]
    weight gradient over the threads otherwise than one run's GEMM does; the stacked step multiplies
    member by member for that reason. Without that (undone here), the first-step check sees the
    difference, says so, and the runs train one at a time: same bits as alone, no stack record."""
    from zoo.engine import stacked_step

    monkeypatch.setattr(stacked_step, "ZooSuperpositionModel", type(None))
    manifest = _superposition_manifest(tmp_path)
    caught, alone = Store.open(str(tmp_path / "c")), Store.open(str(tmp_path / "a"))
    train_family(manifest, store=caught, threads=2, progress=False, stack=True)
    assert "not stacked: " in capsys.readouterr().err
    monkeypatch.undo()
    train_family(manifest, store=alone, threads=2, progress=False, stack=False)
    for seed in (1, 2, 3):
        run = caught.run(RunId("spexact", "n20m5", seed))
        assert "stacked" not in run.keyframe_manifest(12)["extra"]["environment"]
        assert _stored(caught, run.run_id) == _stored(alone, run.run_id)


def test_the_superposition_family_shape_stacks_exactly_with_2_threads(tmp_path):
    manifest = _superposition_manifest(tmp_path)
    stacked, alone = Store.open(str(tmp_path / "s")), Store.open(str(tmp_path / "a"))
    train_family(manifest, store=stacked, threads=2, progress=False)
    train_family(manifest, store=alone, threads=2, progress=False, stack=False)
    for seed in (1, 2, 3):
        run = stacked.run(RunId("spexact", "n20m5", seed))
        assert "stacked" in run.keyframe_manifest(12)["extra"]["environment"]
        assert _stored(stacked, run.run_id) == _stored(alone, run.run_id)


def test_a_null_branch_of_a_stacked_run_is_its_parent_bit_for_bit(family):
    """A branch of a stacked run starts from its stored or replayed step and trains alone."""
    from training.branching import branch

    _, stacked, _ = family
    parent = RunId("micro", "b", 2)
    outcome = branch("micro-b", seed=2, from_step=5, label="null", store=stacked, progress=False)
    assert (outcome.status, outcome.last_step) == ("trained", 24)
    child = stacked.run(parent.with_branch("null"))
    for step in child.checkpoint_steps()[1:]:
        assert child.checkpoint_manifest(step)["tensors"] == \
            stacked.run(parent).checkpoint_manifest(step)["tensors"], step
