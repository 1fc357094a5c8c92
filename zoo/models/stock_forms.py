"""Toy models as a stock transformers class, where one computes the same function: GPT-2.

The toy block is GPT-2's (pre-LayerNorm attention and MLP, learned positions, a final LayerNorm)
but for three things a stock GPT2LMHeadModel takes as options: exact GELU (GPT-2's
`activation_function="gelu"`, not its default "gelu_new"), untied embeddings
(`tie_word_embeddings=False`) and separate q, k, v projections (GPT-2 concatenates them in one
Conv1D, whose weight is the transpose of a Linear's). So a GELU or ReLU toy model is a GPT-2 model,
and an attention-only one is a GPT-2 model whose MLPs are exact zeros (a width-1 MLP of zero
weights adds 0.0). Snapshots in this form open with `AutoModelForCausalLM.from_pretrained(path)`
and no remote code, in TransformerLens' own GPT-2 adapter, nnsight and SAELens. The logits agree
to float rounding, not to the bit: GPT-2 scales attention scores by a product and masks by
addition, the toy model divides and fills (within 1e-5, tested).

Not mappable, and refused with why: SoLU (softmax-linear then a LayerNorm inside the MLP) and the
toy model without LayerNorm (every stock GPT-style class normalises).
"""
from __future__ import annotations

import torch
from transformers import GPT2Config

from zoo_common.errors import ArgumentError

GPT2_ACTIVATIONS = {"gelu": "gelu", "relu": "relu"}  # toy hidden_act -> GPT-2 activation_function


def check_gpt2_form(config) -> None:
    """Refuse, saying why, a toy config no GPT-2 model computes."""
    if not getattr(config, "use_layer_norm", True):
        raise ArgumentError("a toy model without LayerNorm has no stock form: every GPT-style "
                            "class in transformers normalises; open it with trust_remote_code")
    if not config.attn_only and config.hidden_act not in GPT2_ACTIVATIONS:
        raise ArgumentError(f"a {config.hidden_act} toy model has no stock form (SoLU's softmax "
                            f"and LayerNorm inside the MLP are no GPT-2 option); stock forms exist "
                            f"for {', '.join(GPT2_ACTIVATIONS)} and attention-only models")


def gpt2_config(config) -> GPT2Config:
    """The GPT2Config that computes what the toy config does."""
    check_gpt2_form(config)
    return GPT2Config(
        vocab_size=config.vocab_size, n_positions=config.max_position_embeddings,
        n_embd=config.hidden_size, n_layer=config.num_hidden_layers,
        n_head=config.num_attention_heads, n_inner=1 if config.attn_only else config.intermediate_size,
        activation_function=GPT2_ACTIVATIONS.get(config.hidden_act, "gelu"),
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=config.layer_norm_eps,
        tie_word_embeddings=False, scale_attn_weights=True, use_cache=False,
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
        architectures=["GPT2LMHeadModel"])


def gpt2_tensors(config, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The toy model's weights under GPT2LMHeadModel's names and layouts."""
    check_gpt2_form(config)
    out = {"transformer.wte.weight": tensors["model.embed_tokens.weight"],
           "transformer.wpe.weight": tensors["model.embed_positions.weight"],
           "transformer.ln_f.weight": tensors["model.final_norm.weight"],
           "transformer.ln_f.bias": tensors["model.final_norm.bias"],
           "lm_head.weight": tensors["lm_head.weight"]}
    d = config.hidden_size
    for layer in range(config.num_hidden_layers):
        toy, gpt = f"model.layers.{layer}", f"transformer.h.{layer}"
        out[f"{gpt}.ln_1.weight"] = tensors[f"{toy}.ln_attn.weight"]
        out[f"{gpt}.ln_1.bias"] = tensors[f"{toy}.ln_attn.bias"]
        out[f"{gpt}.attn.c_attn.weight"] = torch.cat(
            [tensors[f"{toy}.attn.{p}_proj.weight"].T for p in "qkv"], dim=1)
        out[f"{gpt}.attn.c_attn.bias"] = torch.cat([tensors[f"{toy}.attn.{p}_proj.bias"] for p in "qkv"])
        out[f"{gpt}.attn.c_proj.weight"] = tensors[f"{toy}.attn.o_proj.weight"].T
        out[f"{gpt}.attn.c_proj.bias"] = tensors[f"{toy}.attn.o_proj.bias"]
        if config.attn_only:  # an MLP of exact zeros: it adds 0.0 to the residual stream
            zeros = tensors[f"{toy}.ln_attn.weight"].new_zeros
            out[f"{gpt}.ln_2.weight"], out[f"{gpt}.ln_2.bias"] = zeros(d) + 1, zeros(d)
            out[f"{gpt}.mlp.c_fc.weight"], out[f"{gpt}.mlp.c_fc.bias"] = zeros(d, 1), zeros(1)
            out[f"{gpt}.mlp.c_proj.weight"], out[f"{gpt}.mlp.c_proj.bias"] = zeros(1, d), zeros(d)
            continue
        out[f"{gpt}.ln_2.weight"] = tensors[f"{toy}.ln_mlp.weight"]
        out[f"{gpt}.ln_2.bias"] = tensors[f"{toy}.ln_mlp.bias"]
        out[f"{gpt}.mlp.c_fc.weight"] = tensors[f"{toy}.mlp.up_proj.weight"].T
        out[f"{gpt}.mlp.c_fc.bias"] = tensors[f"{toy}.mlp.up_proj.bias"]
        out[f"{gpt}.mlp.c_proj.weight"] = tensors[f"{toy}.mlp.down_proj.weight"].T
        out[f"{gpt}.mlp.c_proj.bias"] = tensors[f"{toy}.mlp.down_proj.bias"]
    return {name: t.contiguous().clone() for name, t in out.items()}
