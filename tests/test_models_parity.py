"""Parity: the registered zoo-toy model computes exactly what the architecture says.

The reference below is plain torch written from the math (pre-LayerNorm blocks, learned positions,
causal softmax attention, GELU or SoLU-then-LayerNorm MLP, or none), reading only the state dict.
"""

from __future__ import annotations

import math

import pytest
import torch

from zoo.config.run_config import FamilyConfig, SeedConfig, SizeConfig
from zoo.models.build import build_model

VOCAB, WIDTH, HEADS, LAYERS, EPS = 61, 32, 4, 2, 1e-5


def layer_norm(x, weight, bias):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + EPS) * weight + bias


def reference_forward(
    sd: dict[str, torch.Tensor], x: torch.Tensor, *, activation: str, attn_only: bool
):
    batch, seq = x.shape
    d_head = WIDTH // HEADS
    h = sd["model.embed_tokens.weight"][x] + sd["model.embed_positions.weight"][:seq]
    causal = torch.tril(torch.ones(seq, seq, dtype=torch.bool))
    patterns = []
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        a = layer_norm(h, sd[p + "ln_attn.weight"], sd[p + "ln_attn.bias"])
        q, k, v = (
            (a @ sd[p + f"attn.{n}_proj.weight"].T + sd[p + f"attn.{n}_proj.bias"]).reshape(
                batch, seq, HEADS, d_head
            )
            for n in "qkv"
        )
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d_head)
        pattern = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
        patterns.append(pattern)
        z = torch.einsum("bhqk,bkhd->bqhd", pattern, v).reshape(batch, seq, WIDTH)
        h = h + z @ sd[p + "attn.o_proj.weight"].T + sd[p + "attn.o_proj.bias"]
        if attn_only:
            continue
        m = layer_norm(h, sd[p + "ln_mlp.weight"], sd[p + "ln_mlp.bias"])
        pre = m @ sd[p + "mlp.up_proj.weight"].T + sd[p + "mlp.up_proj.bias"]
        if activation == "gelu":
            post = 0.5 * pre * (1 + torch.erf(pre / math.sqrt(2)))
        else:  # SoLU(x) = x * softmax(x), then LayerNorm over the MLP width
            post = layer_norm(
                pre * torch.softmax(pre, dim=-1),
                sd[p + "mlp.solu_norm.weight"],
                sd[p + "mlp.solu_norm.bias"],
            )
        h = h + post @ sd[p + "mlp.down_proj.weight"].T + sd[p + "mlp.down_proj.bias"]
    h = layer_norm(h, sd["model.final_norm.weight"], sd["model.final_norm.bias"])
    return h @ sd["lm_head.weight"].T, patterns


@pytest.mark.parametrize(
    ("activation", "attn_only"), [("gelu", False), ("solu", False), ("gelu", True)]
)
def test_toy_logits_match_hand_computed_reference(activation, attn_only):
    size = SizeConfig(
        "v", LAYERS, WIDTH, HEADS, mlp_width=48, activation=activation, attn_only=attn_only
    )
    fam = FamilyConfig(
        family="p", architecture="toy", sizes=(size,), seeds=(SeedConfig(5),), batch_size=1, steps=1
    )
    model = build_model(fam.run("v", 5), vocab_size=VOCAB, eos_token_id=0)
    # trained weights are not initial ones: perturb every tensor so LayerNorm gains, biases
    # and SoLU's norm all take part in the comparison
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        for param in model.parameters():
            param.add_(0.3 * torch.randn(param.shape, generator=gen))
    x = torch.randint(0, VOCAB, (3, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(x, output_attentions=True)
        expected, patterns = reference_forward(
            model.state_dict(), x, activation=activation, attn_only=attn_only
        )
    assert torch.allclose(out.logits, expected, atol=1e-5, rtol=1e-5), (
        (out.logits - expected).abs().max()
    )
    for ours, ref in zip(out.attentions, patterns):
        assert torch.allclose(ours, ref, atol=1e-6)
    # the reference must be sensitive: dropping the MLPs changes the logits
    if not attn_only:
        without_mlp, _ = reference_forward(
            model.state_dict(), x, activation=activation, attn_only=True
        )
        assert not torch.allclose(without_mlp, expected, atol=1e-2)
