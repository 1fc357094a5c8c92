"""A TransformerLens 4 architecture adapter for the zoo's toy architecture (`ZooToyForCausalLM`).

TransformerLens 4 removed HookedTransformer; its one path is `TransformerBridge`, which wraps the
HF model and maps its modules to TransformerLens' components and hook names through an adapter.
This adapter covers every toy variant: attention-only, GELU, ReLU, SoLU (its LayerNorm after the
activation exposed as `mlp.hook_mid`, folded by compatibility mode as HookedTransformer's
`solu_ln`), and no LayerNorm at all (the grokking model).

Registered through TransformerLens' `transformer_lens.architectures` entry point (pyproject.toml).
TransformerLens 4.3's `boot_transformers` consults only its static SUPPORTED_ARCHITECTURES table
before the entry points are read, so importing this module also puts the adapter into that table
(`register`), which `zoo.load_transformer_lens` does for you.

This file is also a toy snapshot's second remote-code file: `write_remote_code` (toy.py, beside
it) copies it verbatim beside `modeling_zoo_toy.py`, which imports it once TransformerLens is
loaded, so `boot_transformers(folder, trust_remote_code=True)` works where zoo is not installed.
Hence it imports nothing of zoo, only torch and TransformerLens. It lives beside the architecture
(not in zoo/interp) because the snapshot writer copies it; the entry point names it here.

The attention bridge recomputes the toy attention from the wrapped projections instead of calling
the HF module, so `hook_attn_scores` (pre-softmax) and `hook_pattern` are live and editable, as in
HookedTransformer; tests check it equals the model's own attention.
"""
from __future__ import annotations

import math

import torch

# In a `try` because transformers checks a Hub remote-code file's imports before it runs any of it,
# and skips those in a `try`: a snapshot carrying this file still loads without TransformerLens
# (modeling_zoo_toy.py then never imports it).
try:
    from transformer_lens.factories import architecture_adapter_factory as factory
    from transformer_lens.model_bridge.architecture_adapter import ArchitectureAdapter
    from transformer_lens.model_bridge.generalized_components import (
        AttentionBridge,
        BlockBridge,
        EmbeddingBridge,
        LinearBridge,
        MLPBridge,
        NormalizationBridge,
        PosEmbedBridge,
        UnembeddingBridge,
    )
    from transformer_lens.model_bridge.generalized_components.base import GeneralizedComponent
except ImportError as exc:
    raise ImportError(f"the zoo-toy adapter needs TransformerLens >= 4.3: {exc}") from exc

ARCHITECTURE = "ZooToyForCausalLM"  # config.json's `architectures`: the key TransformerLens matches


class ZooToyAttentionBridge(AttentionBridge):
    """The toy attention (zoo/models/toy.py ZooToyAttention.forward), recomputed through the
    bridge's q/k/v/o so that scores and pattern pass through editable hooks."""

    def forward(self, *args, **kwargs):
        x = self.hook_in(args[0] if args else kwargs["x"])
        mask = args[1] if len(args) > 1 else kwargs["mask"]  # bool [.., query, key], True = attend
        queries = args[2] if len(args) > 2 else kwargs.get("queries")
        attention = self.original_component
        n_heads, d_head, batch = attention.num_heads, attention.head_dim, x.shape[0]

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, t.shape[1], n_heads, d_head).transpose(1, 2)

        x_q = x if queries is None else x[:, queries]
        if queries is not None:
            mask = mask[:, :, queries]
        q, k, v = heads(self.q(x_q)), heads(self.k(x)), heads(self.v(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d_head)
        scores = self.hook_attn_scores(scores.masked_fill(~mask, torch.finfo(scores.dtype).min))
        pattern = self.hook_pattern(torch.softmax(scores, dim=-1))
        z = torch.matmul(pattern, v).transpose(1, 2).reshape(batch, x_q.shape[1], n_heads * d_head)
        return self.hook_out(self.o(z)), pattern


class SoluMLPBridge(MLPBridge):
    """SoLU's MLP with HookedTransformer's names: hook_pre, hook_mid (before the LayerNorm), hook_post."""

    hook_aliases = {"hook_pre": "in.hook_out", "hook_mid": "ln.hook_in", "hook_post": "out.hook_in"}


class ZooToyArchitectureAdapter(ArchitectureAdapter):
    """Maps ZooToyForCausalLM's modules onto TransformerLens' components."""

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self._build(use_layer_norm=True)

    def prepare_model(self, hf_model) -> None:
        super().prepare_model(hf_model)
        # `use_layer_norm` is not a field of TransformerLens' config: read it from the HF model
        self._build(use_layer_norm=bool(getattr(hf_model.config, "use_layer_norm", True)))

    def _build(self, *, use_layer_norm: bool) -> None:
        cfg = self.cfg
        cfg.normalization_type = "LN" if use_layer_norm else None  # None: nothing to fold or centre
        cfg.positional_embedding_type = "standard"
        cfg.final_rms = False
        cfg.gated_mlp = False
        cfg.uses_rms_norm = False
        cfg.attn_only = bool(getattr(cfg, "attn_only", False))
        if (getattr(cfg, "hidden_act", None) or cfg.act_fn) == "solu":
            cfg.act_fn = "solu_ln"  # weight processing folds the MLP LayerNorm for "solu*"
        cfg.default_prepend_bos = False  # zoo corpora have no BOS: a sample starts with text
        self.weight_processing_conversions = {**self._qkvo_weight_conversions(include_biases=True)}

        def norm(name: str):
            if use_layer_norm:
                return NormalizationBridge(name=name, config=cfg)
            return GeneralizedComponent(name=name, config=cfg)  # nn.Identity, still hooked

        block = {
            "ln1": norm("ln_attn"),
            "attn": ZooToyAttentionBridge(name="attn", config=cfg, submodules={
                "q": LinearBridge(name="q_proj"), "k": LinearBridge(name="k_proj"),
                "v": LinearBridge(name="v_proj"), "o": LinearBridge(name="o_proj")}),
        }
        if not cfg.attn_only:
            block["ln2"] = norm("ln_mlp")
            mlp = {"in": LinearBridge(name="up_proj"), "out": LinearBridge(name="down_proj")}
            if cfg.act_fn == "solu_ln":
                mlp["ln"] = NormalizationBridge(name="solu_norm", config=cfg)
                block["mlp"] = SoluMLPBridge(name="mlp", config=cfg, submodules=mlp)
            else:
                block["mlp"] = MLPBridge(name="mlp", config=cfg, submodules=mlp)
        blocks = BlockBridge(name="model.layers", config=cfg, submodules=block)
        if cfg.attn_only:  # no MLP: these aliases would point at nothing
            blocks.hook_aliases = {k: v for k, v in blocks.hook_aliases.items()
                                   if k not in ("hook_resid_mid", "hook_mlp_out")}
        self.component_mapping = {
            "embed": EmbeddingBridge(name="model.embed_tokens"),
            "pos_embed": PosEmbedBridge(name="model.embed_positions"),
            "blocks": blocks,
            "ln_final": norm("model.final_norm"),
            "unembed": UnembeddingBridge(name="lm_head"),
        }


def register() -> None:
    """Make `TransformerBridge.boot_transformers` find the adapter (see the module docstring)."""
    factory.ArchitectureAdapterFactory.discover_entry_points()
    factory.ArchitectureAdapterFactory._adapters.setdefault(ARCHITECTURE, ZooToyArchitectureAdapter)
    factory.SUPPORTED_ARCHITECTURES.setdefault(ARCHITECTURE, ZooToyArchitectureAdapter)


register()
