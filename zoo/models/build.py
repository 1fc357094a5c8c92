"""Run config -> transformers config and model, with deterministic initial weights.

GPT-NeoX (as Pythia: parallel residual, rotary on a quarter of each head, untied embeddings) and
Llama are stock transformers classes, so their checkpoints load with `AutoModelForCausalLM` and no
code of ours; "toy" is our one small transformer (zoo/models/toy.py), "superposition" the ReLU
output model of Toy Models of Superposition (zoo/models/superposition.py). Every model is built with
dropout 0 and eager attention: deterministic, CPU-friendly, and `output_attentions` works.

Initial weights come from the named stream "init" seeded by the run's `init_seed`, inside
`torch.random.fork_rng`, so the same init_seed gives bit-identical weights and building a model
never disturbs the caller's global RNG.
"""

from __future__ import annotations

import torch
from transformers import (
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
)

from zoo.config.run_config import ARCHITECTURES, RunConfig
from zoo.config.seeds import derive_seed
from data_index.features import FeatureRecipe
from zoo.models.superposition import ZooSuperpositionConfig, ZooSuperpositionModel
from zoo.models.toy import ZooToyConfig, ZooToyForCausalLM

__all__ = ["ARCHITECTURES", "build_hf_config", "build_model", "model_class"]

ATTN_IMPLEMENTATION = "eager"
PYTHIA_ROTARY_PCT = 0.25
ROPE_THETA = 10_000.0
DEFAULT_INIT_STD = 0.02


def build_hf_config(run: RunConfig, *, vocab_size: int, eos_token_id: int) -> PretrainedConfig:
    """The transformers config for `run`'s architecture and size (vocab: the prepared corpus's)."""
    size = run.size
    if run.architecture == "superposition":  # no tokens: n features (from the data) into m = width
        recipe = FeatureRecipe.parse(run.data.source)
        return ZooSuperpositionConfig(n_features=recipe.n, hidden_size=size.width,
                                      importance=[float(v) for v in recipe.importance_vector()],
                                      initializer_range=size.init_std)
    common = {
        "vocab_size": vocab_size,
        "hidden_size": size.width,
        "num_hidden_layers": size.layers,
        "num_attention_heads": size.heads,
        "intermediate_size": size.mlp_width,
        "hidden_act": size.activation,
        "max_position_embeddings": size.context,
        "initializer_range": size.init_std if size.init_std is not None else DEFAULT_INIT_STD,
        "tie_word_embeddings": False,
        "bos_token_id": eos_token_id,
        "eos_token_id": eos_token_id,
        "attn_implementation": ATTN_IMPLEMENTATION,
    }
    if run.architecture == "gpt-neox":
        config = GPTNeoXConfig(
            **common,
            layer_norm_eps=1e-5,
            use_parallel_residual=True,
            rotary_pct=PYTHIA_ROTARY_PCT,
            rotary_emb_base=ROPE_THETA,
            attention_dropout=0.0,
            hidden_dropout=0.0,
            attention_bias=True,
        )
    elif run.architecture == "llama":
        config = LlamaConfig(
            **common,
            num_key_value_heads=size.heads,
            rms_norm_eps=1e-5,
            rope_theta=ROPE_THETA,
            attention_dropout=0.0,
            attention_bias=False,
            mlp_bias=False,
        )
    elif run.architecture == "toy":
        config = ZooToyConfig(**common, attn_only=size.attn_only, use_layer_norm=size.layer_norm,
                              layer_norm_eps=1e-5)
    else:  # RunConfig validates the architecture; this guards a new entry in ARCHITECTURES
        raise AssertionError(f"no builder for architecture {run.architecture!r}")
    config._attn_implementation = ATTN_IMPLEMENTATION
    return config


def model_class(architecture: str) -> type[PreTrainedModel]:
    return {"gpt-neox": GPTNeoXForCausalLM, "llama": LlamaForCausalLM, "toy": ZooToyForCausalLM,
            "superposition": ZooSuperpositionModel}[architecture]


def build_model(run: RunConfig, *, vocab_size: int, eos_token_id: int) -> PreTrainedModel:
    """A freshly initialized fp32 model in eval mode; same init_seed => bit-identical weights."""
    config = build_hf_config(run, vocab_size=vocab_size, eos_token_id=eos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed("init", run.seed.init_seed))
        with torch.device("cpu"):
            model = model_class(run.architecture)(config)
    model = model.to(torch.float32)
    model.eval()
    return model
