"""Run configs: stable expansion, JSON round trip, hashing, field differences; checkpoint policy."""

from __future__ import annotations

import dataclasses
import json

import pytest

from zoo_common.errors import ZooError
from zoo.config.checkpoint_policy import checkpoint_steps, keyframe_steps
from zoo.config.run_config import CheckpointConfig, FamilyConfig, RunConfig, TrainingSettings
from zoo.config.manifest import load_manifest, parse_manifest

PINNED = """\
family: pin
architecture: llama
sizes: [{name: 1l32, layers: 1, width: 32, heads: 4}]
seeds: [{seed: 3, init_seed: 1}]
data: {vocab_size: 256, seq_len: 16}
batch_size: 4
steps: 10
"""


def test_runs_are_every_size_by_seed_in_manifest_order():
    family = load_manifest("tiny")
    runs = family.runs()
    assert [(r.size.name, r.seed.seed) for r in runs] == [
        (s.name, seed.seed) for s in family.sizes for seed in family.seeds
    ]
    assert runs[0].model_name == "tiny-1l64" and runs[-1].model_name == "tiny-2l128"
    assert family.run("2l128", 2) == runs[-2]


def test_json_round_trip_and_hash():
    run = load_manifest("pythia-scale").run("70m", 6)
    data = run.to_json()
    assert json.loads(json.dumps(data)) == data  # JSON-safe
    assert data["size"]["context"] == 2048 and data["seed"] == {
        "seed": 6,
        "init_seed": 1,
        "data_seed": 6,
    }
    again = RunConfig.from_json(data)
    assert again == run and again.config_hash() == run.config_hash()
    assert len(run.config_hash()) == 64


def test_differences_name_the_changed_fields():
    run = load_manifest("tiny").run("2l64", 1)
    changed = dataclasses.replace(
        run, optimizer=dataclasses.replace(run.optimizer, lr=0.5), steps=run.steps + 1
    )
    assert run.differences(run) == []
    assert changed.differences(run) == ["optimizer.lr", "steps"]
    assert changed.config_hash() != run.config_hash()


def test_from_json_rejects_unknown_and_mistyped_fields():
    data = load_manifest("tiny").run("1l64", 1).to_json()
    with pytest.raises(ZooError, match="optimizer.momentum: unknown key"):
        RunConfig.from_json({**data, "optimizer": {**data["optimizer"], "momentum": 0.9}})
    with pytest.raises(ZooError, match="size.heads: must be an integer"):
        RunConfig.from_json({**data, "size": {**data["size"], "heads": "four"}})


def test_recorded_json_and_hash_are_pinned():
    # stored runs hold this JSON and are found by this hash: a refactor must not move either
    run = parse_manifest(PINNED).runs()[0]
    assert list(run.to_json()) == [
        "family",
        "architecture",
        "size",
        "seed",
        "data",
        "optimizer",
        "schedule",
        "batch_size",
        "steps",
        "checkpoints",
        "precision",
    ]  # micro_batch_size is left out while unset
    assert run.config_hash() == "b4504c171c126fdc0ae440b4a6e331061d83529be5505ce2b0e11f8743650d18"
    micro = parse_manifest(PINNED + "micro_batch_size: 2\n").runs()[0]
    assert micro.config_hash() == (
        "9fa9cd9d2331259703f19078d1b16228b694408e2589d4a036e60d9a25d73f7f"
    )


def test_run_and_family_share_one_declaration_of_the_settings():
    shared = {f.name for f in dataclasses.fields(TrainingSettings)}
    # besides its size and seed, a run holds only what a branch sets (the attribution check's
    # masked samples), never a manifest
    assert {f.name for f in dataclasses.fields(RunConfig)} - shared == {
        "size", "seed", "masked_samples", "masked_until"}
    assert {f.name for f in dataclasses.fields(FamilyConfig)} - shared == {"sizes", "seeds"}
    family = parse_manifest(PINNED)
    run = family.runs()[0]
    assert all(getattr(run, name) == getattr(family, name) for name in shared)


def test_masked_samples_are_recorded_only_where_a_branch_sets_them():
    run = parse_manifest(PINNED).runs()[0]
    assert "masked_samples" not in run.to_json() and run.masked_at(5) == frozenset()
    masked = dataclasses.replace(run, masked_samples=(3, 7), masked_until=10)
    again = RunConfig.from_json(masked.to_json())
    assert again == masked and again.config_hash() != run.config_hash()
    assert again.masked_at(10) == {3, 7} and again.masked_at(11) == frozenset()


def test_a_record_must_be_complete_but_for_later_options():
    data = parse_manifest(PINNED).runs()[0].to_json()
    with pytest.raises(ZooError, match="^steps: is required"):
        RunConfig.from_json({k: v for k, v in data.items() if k != "steps"})
    with pytest.raises(ZooError, match="^optimizer: is required"):
        RunConfig.from_json({k: v for k, v in data.items() if k != "optimizer"})
    older = {k: v for k, v in data.items() if k != "precision"}  # recorded before precision
    assert RunConfig.from_json(older).precision == "fp32"


def test_checkpoint_policy_known_case():
    cfg = CheckpointConfig(log_spaced_until=512, every=1000, keyframe_every=2000)
    assert checkpoint_steps(cfg, 3500) == [
        0,
        1,
        2,
        4,
        8,
        16,
        32,
        64,
        128,
        256,
        512,
        1000,
        2000,
        3000,
        3500,
    ]
    assert keyframe_steps(cfg, 3500) == [0, 2000, 3500]


def test_checkpoint_policy_tiny_and_short_runs():
    cfg = CheckpointConfig(log_spaced_until=512, every=50, keyframe_every=50)
    assert checkpoint_steps(cfg, 300) == [
        0,
        1,
        2,
        4,
        8,
        16,
        32,
        50,
        64,
        100,
        128,
        150,
        200,
        250,
        256,
        300,
    ]
    assert keyframe_steps(cfg, 300) == [0, 50, 100, 150, 200, 250, 300]
    short = CheckpointConfig(log_spaced_until=4, every=100, keyframe_every=3)
    assert checkpoint_steps(short, 7) == [0, 1, 2, 3, 4, 6, 7]  # keyframes are checkpoints too
    assert keyframe_steps(short, 7) == [0, 3, 6, 7]
    assert set(keyframe_steps(short, 7)) <= set(checkpoint_steps(short, 7))


SIZES_OF_THEIR_OWN = """\
family: mixed
architecture: toy
sizes:
  - {name: attn, layers: 1, width: 32, heads: 4, attn_only: true}
  - {name: prod, layers: 1, width: 32, heads: 4, mlp_width: 48, architecture: llama, steps: 20}
seeds: [1]
data: {vocab_size: 256, seq_len: 16}
batch_size: 4
steps: 10
"""


def test_a_size_may_have_its_own_architecture_and_steps_and_the_others_keep_their_hash():
    family = parse_manifest(SIZES_OF_THEIR_OWN)
    attn, prod = family.runs()
    assert (attn.architecture, attn.steps) == ("toy", 10)
    assert (prod.architecture, prod.steps, prod.size.activation) == ("llama", 20, "silu")
    alone = parse_manifest(SIZES_OF_THEIR_OWN.replace(
        "  - {name: prod, layers: 1, width: 32, heads: 4, mlp_width: 48, architecture: llama, steps: 20}\n", ""))
    assert alone.runs()[0].config_hash() == attn.config_hash()  # absent keys stay out of the record
    assert "steps" not in attn.to_json()["size"] and prod.to_json()["size"]["steps"] == 20
    assert RunConfig.from_json(prod.to_json()) == prod


@pytest.mark.parametrize("change, words", [
    ("steps: 20}", ["size 'prod': steps", "must be > 0, got 0"]),
    ("architecture: llama", ["size 'prod': architecture", "unknown architecture 'gpt5'"]),
])
def test_a_bad_size_override_names_the_size_and_field(change, words):
    bad = {"steps: 20}": "steps: 0}", "architecture: llama": "architecture: gpt5"}[change]
    with pytest.raises(ZooError) as error:
        parse_manifest(SIZES_OF_THEIR_OWN.replace(change, bad))
    for word in words:
        assert word in str(error.value)
