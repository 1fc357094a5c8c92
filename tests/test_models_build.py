"""Model building: deterministic init from init_seed, RNG hygiene, HF round trips, HF outputs."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForCausalLM

from zoo.config.run_config import ARCHITECTURES as CONFIG_ARCHITECTURES
from zoo.config.run_config import TRANSFORMERS
from zoo.config.run_config import FamilyConfig, SeedConfig, SizeConfig
from zoo.config.manifest import builtin_manifest_paths, load_manifest
from zoo.models.build import ARCHITECTURES, build_hf_config, build_model, model_class
from zoo.models.toy import ZooToyForCausalLM, register_toy_model

VOCAB, EOS = 97, 0


def family(architecture: str, **size) -> FamilyConfig:
    shape = {"name": "2l32", "layers": 2, "width": 32, "heads": 4, **size}
    return FamilyConfig(
        family="t",
        architecture=architecture,
        sizes=(SizeConfig(**shape),),
        seeds=(SeedConfig(1), SeedConfig(2), SeedConfig(3, init_seed=1)),
        batch_size=2,
        steps=4,
    )


def build(architecture: str, seed: int = 1, **size):
    return build_model(
        family(architecture, **size).run("2l32", seed), vocab_size=VOCAB, eos_token_id=EOS
    )


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def tokens(batch: int = 2, seq: int = 12) -> torch.Tensor:
    return torch.arange(batch * seq).reshape(batch, seq) * 7 % VOCAB


def test_architecture_lists_agree():
    assert ARCHITECTURES == CONFIG_ARCHITECTURES == ("gpt-neox", "llama", "toy", "superposition")
    assert TRANSFORMERS == ("gpt-neox", "llama", "toy")  # superposition: tests/test_superposition.py


@pytest.mark.parametrize("architecture", TRANSFORMERS)
def test_init_seed_decides_the_weights(architecture):
    first = build(architecture, 1)
    assert same_weights(first, build(architecture, 1))
    assert same_weights(first, build(architecture, 3))  # seed 3 pins init_seed 1
    assert not same_weights(first, build(architecture, 2))
    assert not first.training
    assert all(p.dtype == torch.float32 for p in first.parameters())


def test_build_model_leaves_global_rng_alone():
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    build("toy")
    build("gpt-neox")
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("architecture", TRANSFORMERS)
def test_save_and_auto_load_round_trip(tmp_path, architecture):
    register_toy_model()
    model = build(architecture)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="eager")
    assert type(loaded) is type(model) and same_weights(model, loaded)
    plain = AutoModelForCausalLM.from_pretrained(
        tmp_path
    )  # a stranger's load: default attention kernel
    x = tokens()
    with torch.no_grad():
        assert torch.equal(model(x).logits, loaded.eval()(x).logits)
        assert torch.allclose(model(x).logits, plain.eval()(x).logits, atol=1e-5)


def test_toy_config_is_registered_and_registration_is_idempotent(tmp_path):
    register_toy_model()
    register_toy_model()
    model = build("toy", activation="solu")
    model.config.save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    assert config.model_type == "zoo-toy" and config.hidden_act == "solu"
    assert isinstance(AutoModelForCausalLM.from_config(config), ZooToyForCausalLM)


@pytest.mark.parametrize(
    ("architecture", "size"),
    [
        ("gpt-neox", {}),
        ("llama", {}),
        ("toy", {}),
        ("toy", {"activation": "solu"}),
        ("toy", {"attn_only": True}),
    ],
)
def test_attentions_hidden_states_and_loss(architecture, size):
    model = build(architecture, **size)
    x = tokens()
    with torch.no_grad():
        out = model(x, labels=x, output_attentions=True, output_hidden_states=True)
    assert len(out.attentions) == 2 and len(out.hidden_states) == 3
    for pattern in out.attentions:
        assert pattern.shape == (2, 4, 12, 12)
        assert torch.allclose(pattern.sum(-1), torch.ones(2, 4, 12), atol=1e-5)
        assert torch.all(pattern.triu(diagonal=1) == 0)  # causal: no attention to later tokens
    expected = F.cross_entropy(out.logits[:, :-1].reshape(-1, VOCAB), x[:, 1:].reshape(-1))
    assert torch.allclose(out.loss, expected, atol=1e-6)


def test_attn_only_has_no_mlp_and_solu_has_its_layernorm():
    attn_only = {k for k in build("toy", attn_only=True).state_dict()}
    solu = {k for k in build("toy", activation="solu").state_dict()}
    assert not any("mlp" in k for k in attn_only)
    assert "model.layers.0.mlp.solu_norm.weight" in solu


@pytest.mark.parametrize("name", sorted(builtin_manifest_paths()))
def test_every_builtin_size_builds(name):
    fam = load_manifest(name)
    for size in fam.sizes:
        run = fam.run(size.name, fam.seeds[0].seed)
        config = build_hf_config(run, vocab_size=fam.data.vocab_size, eos_token_id=EOS)
        if fam.architecture == "superposition":  # features in, features out: no tokens
            model = build_model(run, vocab_size=0, eos_token_id=EOS)
            n = config.n_features
            assert tuple(model.W.shape) == (size.width, n) and tuple(model.b.shape) == (n,)
            assert model(features=torch.rand(3, n)).reconstruction.shape == (3, n)
            continue
        assert (config.num_hidden_layers, config.hidden_size) == (size.layers, size.width)
        if name == "pythia-scale":
            continue  # GPU scale: shapes are checked on the meta device below
        model = build_model(run, vocab_size=fam.data.vocab_size, eos_token_id=EOS)
        with torch.no_grad():
            logits = model(tokens(1, fam.data.seq_len) % fam.data.vocab_size).logits
        assert logits.shape == (1, fam.data.seq_len, fam.data.vocab_size)


def test_pythia_scale_matches_published_parameter_counts():
    published = {"14m": 14_067_712, "31m": 30_494_720, "70m": 70_426_624, "160m": 162_322_944}
    fam = load_manifest("pythia-scale")
    for size in fam.sizes:
        config = build_hf_config(fam.run(size.name, 1), vocab_size=50304, eos_token_id=0)
        assert config.use_parallel_residual and not config.tie_word_embeddings
        assert config.rope_parameters["partial_rotary_factor"] == 0.25
        with torch.device("meta"):
            model = model_class("gpt-neox")(config)
        assert sum(p.numel() for p in model.parameters()) == published[size.name], size.name


def test_context_comes_from_seq_len_unless_given():
    run = family("toy").run("2l32", 1)
    assert run.size.context == run.data.seq_len
    longer = dataclasses.replace(run, size=dataclasses.replace(run.size, context=128))
    assert (
        build_hf_config(longer, vocab_size=VOCAB, eos_token_id=EOS).max_position_embeddings == 128
    )
