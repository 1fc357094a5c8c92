"""Manifests: the built-ins validate, and every bad input gets a message naming the file and key."""

from __future__ import annotations

import pytest

from zoo_common.errors import ZooError
from zoo.config.run_config import ARCHITECTURES
from zoo.config.manifest import builtin_manifest_paths, load_manifest

BASE = """\
family: fam
architecture: toy
sizes:
  - {name: 1l32, layers: 1, width: 32, heads: 4}
  - {name: 2l32, layers: 2, width: 32, heads: 4, activation: solu}
seeds: [1, 2, {seed: 3, init_seed: 1}, {seed: 4, data_seed: 2}]
data: {source: "builtin:pydoc", vocab_size: 256, seq_len: 16}
optimizer: {lr: 1e-3, betas: [0.9, 0.95]}
batch_size: 4
steps: 10
"""


def write(tmp_path, text: str):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    return path


def error_of(tmp_path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ZooError) as info:
        load_manifest(path)
    message = str(info.value)
    assert str(path) in message, message  # every manifest error names its file
    return message


def test_builtin_manifests_validate():
    paths = builtin_manifest_paths()
    assert {"tiny", "toy-interp", "pythia-scale"} <= set(paths)
    for name in paths:
        family = load_manifest(name)
        assert family.family == name
        assert len(family.runs()) == len(family.sizes) * len(family.seeds)


@pytest.mark.parametrize("name", ["grokking", "induction"])
def test_model_system_families_ship_a_card_that_parses(name):
    from zoo.store.cards import builtin_card_path, read_card

    card = read_card(builtin_card_path(name))
    assert card.measures and card.evaluate, name
    family = load_manifest(name)
    assert len(family.seeds) == 5
    sizes = {size.name for size in family.sizes}
    named = {s for m in card.measures for s in m.get("sizes", [])}
    named |= {c[arm] for c in card.comparisons for arm in ("a", "b")}
    assert named <= sizes, f"{name}.card.md names sizes its manifest lacks: {named - sizes}"


def test_tiny_is_small_enough_for_ci():
    family = load_manifest("tiny")
    assert len(family.sizes) == 3 and [s.seed for s in family.seeds] == [1, 2, 3]
    assert family.data.source == "builtin:pydoc" and family.precision == "fp32"
    assert family.steps * family.batch_size * family.data.seq_len <= 400 * 16 * 64


def test_base_manifest_resolves_defaults_and_seed_grid(tmp_path):
    family = load_manifest(write(tmp_path, BASE))
    assert family.optimizer.lr == 1e-3  # YAML reads "1e-3" as a string; numbers are accepted
    assert family.precision == "fp32" and family.checkpoints.log_spaced_until == 512
    first = family.sizes[0]
    assert (first.mlp_width, first.context, first.activation, first.attn_only) == (
        128,
        16,
        "gelu",
        False,
    )
    assert [(s.seed, s.init_seed, s.data_seed) for s in family.seeds] == [
        (1, 1, 1),
        (2, 2, 2),
        (3, 1, 3),
        (4, 4, 2),
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("steps: 10", "steps: 10\nsteps_total: 5", ["steps_total", "unknown key"]),
        (
            "optimizer: {lr: 1e-3, ",
            "optimizer: {lrr: 1e-3, ",
            ["optimizer.lrr", "did you mean 'lr'", "valid keys"],
        ),
        (
            "optimizer: {lr: 1e-3,",
            "optimizer: {lr: fast,",
            ["optimizer.lr: must be a number, got 'fast'"],
        ),
        ("batch_size: 4", "batch_size: four", ["batch_size: a number of samples, or 'full'", "got 'four'"]),
        ("batch_size: 4", "batch_size: true", ["batch_size: must be an integer or a string, got True"]),
        ("layers: 1,", "layers: 1.5,", ["sizes[0].layers: must be an integer"]),
        ("betas: [0.9, 0.95]", "betas: [0.9]", ["optimizer.betas: must be a list of 2 items"]),
        (
            "architecture: toy",
            "architecture: gpt5",
            ["unknown architecture 'gpt5'", *ARCHITECTURES],
        ),
        (
            "width: 32, heads: 4, activation",
            "width: 30, heads: 4, activation",
            ["2l32", "width 30 is not divisible by heads 4"],
        ),
        ("batch_size: 4", "batch_size: 0", ["batch_size: must be > 0, got 0"]),
        ("steps: 10", "steps: -5", ["steps: must be > 0, got -5"]),
        ("steps: 10", "steps: 10\nprecision: fp8", ["unknown precision 'fp8'", "fp32", "bf16"]),
        ("seeds: [1, 2,", "seeds: [1, 1,", ["seeds: 1 appears more than once"]),
        ("family: fam", "family: fam\nfamily: other", ["duplicate key 'family'", "line 2"]),
        ("family: fam\n", "", ["family: is required"]),
        ("activation: solu", "activation: silu", ["2l32", "activation 'silu'", "gelu, relu, solu"]),
        (
            "architecture: toy",
            "architecture: llama",
            ["activation 'solu' is not available for architecture llama"],
        ),
        ("name: 1l32,", "name: 1L-32,", ["size name must match"]),
        (
            "seq_len: 16}",
            "seq_len: 16, tokenizer: 5}",
            ["data.tokenizer: must be a string or null, got 5"],
        ),
        (
            "steps: 10",
            "steps: 10\nschedule: {kind: linear}",
            ["unknown schedule 'linear'", "cosine, constant"],
        ),
    ],
)
def test_bad_manifest_names_the_key(tmp_path, old, new, expected):
    assert old in BASE
    message = error_of(tmp_path, BASE.replace(old, new, 1))
    for part in expected:
        assert part in message, message


def test_malformed_yaml_gives_line_and_column(tmp_path):
    message = error_of(tmp_path, BASE.replace("batch_size: 4", "batch_size: [4"))
    assert "malformed YAML at line" in message and "column" in message
    message = error_of(tmp_path, "family: fam\narchitecture: toy\n  sizes: oops\n")
    assert "line 3, column" in message


def test_manifest_must_be_a_mapping(tmp_path):
    assert "must be a mapping" in error_of(tmp_path, "- just\n- a list\n")


def test_unknown_manifest_name_lists_builtins():
    with pytest.raises(ZooError, match="built-in families: .*tiny"):
        load_manifest("no-such-family")


def test_run_lookup_lists_valid_sizes_and_seeds(tmp_path):
    family = load_manifest(write(tmp_path, BASE))
    assert family.run("2l32", 3).seed.init_seed == 1
    with pytest.raises(ZooError, match="valid sizes: 1l32, 2l32"):
        family.run("9l9", 1)
    with pytest.raises(ZooError, match="valid seeds: 1, 2, 3, 4"):
        family.run("1l32", 7)
