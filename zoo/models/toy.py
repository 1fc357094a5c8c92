"""The interpretability architecture: TransformerLens-style toy transformers, as an HF model.

Pre-LayerNorm blocks (or no LayerNorm at all, `use_layer_norm=False`, as the grokking model of
Nanda et al. 2023), learned positional embeddings, separate q/k/v/o projections, and an MLP whose
activation is GELU, ReLU or SoLU (x * softmax(x), then a LayerNorm over the MLP width: Elhage et
al. 2022, TransformerLens' `solu_ln`), or no MLP at all (`attn_only`).

`logits_to_keep` (transformers' name: an int keeps the last N positions, a 1-D tensor the given
ones) also narrows the last block: its queries, MLP, final norm and unembedding run only at those
positions, because nothing else reads them. A task whose loss sits on one answer token trains
about twice as fast that way (benchmarks/RESULTS.md); the training step uses it for masked
losses, so replay computes the same thing. Registered with transformers' Auto
classes under `model_type = "zoo-toy"` by `register_toy_model()`, which zoo.snapshot, zoo.load and
model building call, so a saved folder opens with `AutoModelForCausalLM` in that process.
Elsewhere, a snapshot carries this very file (`write_remote_code`: transformers' standard
`auto_map`), so `from_pretrained(folder, trust_remote_code=True)` opens it without zoo. This file
therefore imports nothing of zoo. Beside it the snapshot carries our TransformerLens adapter
(toy_transformer_lens.py, copied verbatim), which this file imports once
TransformerLens is loaded (`_register_transformer_lens_adapter`), so that
`TransformerBridge.boot_transformers(folder, trust_remote_code=True)` opens the folder without zoo
too. Deliberately small and readable: the eager attention below IS the computation an
interpretability researcher reads, so there is no cache, no kernel dispatch, no dropout.

Outputs follow transformers' conventions: `labels` -> shifted causal-LM loss (`loss_function`),
`output_attentions` -> per-layer softmax patterns [batch, heads, query, key], `output_hidden_states`
-> (embeddings, after block 1, ..., final LayerNorm of the last block's output).
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    GenerationMixin,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import BaseModelOutput, CausalLMOutput

TOY_MODEL_TYPE = "zoo-toy"
TOY_ACTIVATIONS = ("gelu", "relu", "solu")


class ZooToyConfig(PreTrainedConfig):
    """Shape and variant of a toy transformer (field names follow transformers' usual ones)."""

    model_type = TOY_MODEL_TYPE

    vocab_size: int = 2048
    hidden_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 512
    hidden_act: str = "gelu"
    attn_only: bool = False
    use_layer_norm: bool = True
    max_position_embeddings: int = 64
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    tie_word_embeddings: bool = False
    use_cache: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None

    def __post_init__(self, **kwargs) -> None:
        super().__post_init__(**kwargs)
        # TransformerLens 4.3's boot_transformers builds this config (AutoConfig) and then looks the
        # architecture up in a static table: the snapshot's adapter must be in it by then.
        _register_transformer_lens_adapter()

    def validate_architecture(self) -> None:
        """Part of transformers' strict-config validation."""
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.hidden_act not in TOY_ACTIVATIONS:
            raise ValueError(f"hidden_act {self.hidden_act!r} is not one of {TOY_ACTIVATIONS}")


class ZooToyAttention(nn.Module):
    def __init__(self, config: ZooToyConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                queries: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`queries`: positions whose outputs are wanted (all when None); keys are all of x."""
        batch, seq, width = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, t.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

        x_q = x if queries is None else x[:, queries]
        q, k, v = heads(self.q_proj(x_q)), heads(self.k_proj(x)), heads(self.v_proj(x))
        if queries is not None:
            mask = mask[:, :, queries]
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        pattern = torch.softmax(scores, dim=-1)
        out = torch.matmul(pattern, v).transpose(1, 2).reshape(batch, x_q.shape[1], width)
        return self.o_proj(out), pattern


class ZooToyMLP(nn.Module):
    def __init__(self, config: ZooToyConfig):
        super().__init__()
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size)
        self.solu = config.hidden_act == "solu"
        self.act = nn.functional.relu if config.hidden_act == "relu" else nn.functional.gelu
        # SoLU's LayerNorm rescales after the softmax sharpening (TransformerLens hook_mid -> ln).
        self.solu_norm = (
            nn.LayerNorm(config.intermediate_size, eps=config.layer_norm_eps) if self.solu else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.up_proj(x)
        if self.solu:
            post = self.solu_norm(pre * torch.softmax(pre, dim=-1))
        else:
            post = self.act(pre)
        return self.down_proj(post)


def _norm(config: ZooToyConfig) -> nn.Module:
    """The residual-stream LayerNorm, or none (identity) when the config has no LayerNorm."""
    if not config.use_layer_norm:
        return nn.Identity()
    return nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)


class ZooToyBlock(nn.Module):
    def __init__(self, config: ZooToyConfig):
        super().__init__()
        self.ln_attn = _norm(config)
        self.attn = ZooToyAttention(config)
        self.ln_mlp = None if config.attn_only else _norm(config)
        self.mlp = None if config.attn_only else ZooToyMLP(config)

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                queries: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        attn_out, pattern = self.attn(self.ln_attn(x), mask, queries)
        x = (x if queries is None else x[:, queries]) + attn_out
        if self.mlp is not None:
            x = x + self.mlp(self.ln_mlp(x))
        return x, pattern


class ZooToyPreTrainedModel(PreTrainedModel):
    config_class = ZooToyConfig
    config: ZooToyConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _no_split_modules: ClassVar[list[str]] = ["ZooToyBlock"]
    # transformers' default _init_weights does what we want: normal(0, initializer_range) for
    # Linear/Embedding weights, zero biases, LayerNorm weight 1 / bias 0.


class ZooToyModel(ZooToyPreTrainedModel):
    """Embeddings + blocks + final LayerNorm; returns the residual stream."""

    def __init__(self, config: ZooToyConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.embed_positions = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.layers = nn.ModuleList([ZooToyBlock(config) for _ in range(config.num_hidden_layers)])
        self.final_norm = _norm(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        last_block_positions: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutput:
        """`last_block_positions`: compute the last block only there (see the module docstring);
        the last hidden state then holds those positions only."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if output_attentions is None:
            output_attentions = bool(getattr(self.config, "output_attentions", False))
        if output_hidden_states is None:
            output_hidden_states = bool(self.config.output_hidden_states)
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        seq = inputs_embeds.shape[1]
        if seq > self.config.max_position_embeddings:
            raise ValueError(
                f"sequence length {seq} exceeds max_position_embeddings "
                f"{self.config.max_position_embeddings}"
            )
        if position_ids is None:
            position_ids = torch.arange(seq, device=inputs_embeds.device).unsqueeze(0)
        mask = torch.ones(seq, seq, dtype=torch.bool, device=inputs_embeds.device).tril()[
            None, None
        ]
        if attention_mask is not None:  # padding mask [batch, seq]: 1 = attend, 0 = padding
            mask = mask & attention_mask.bool()[:, None, None, :]

        x = inputs_embeds + self.embed_positions(position_ids)
        hidden_states: list[torch.Tensor] = [x]
        patterns: list[torch.Tensor] = []
        last = len(self.layers) - 1
        for i, block in enumerate(self.layers):
            x, pattern = block(x, mask, last_block_positions if i == last else None)
            hidden_states.append(x)
            patterns.append(pattern)
        x = self.final_norm(x)
        hidden_states[-1] = x  # transformers' convention: the last hidden state is post-final-norm
        return BaseModelOutput(
            last_hidden_state=x,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(patterns) if output_attentions else None,
        )


class ZooToyForCausalLM(ZooToyPreTrainedModel, GenerationMixin):
    """ZooToyModel + an unembedding; `labels` gives the standard shifted next-token loss."""

    # used only when config.tie_word_embeddings is true (zoo builds untied models)
    _tied_weights_keys: ClassVar[dict[str, str]] = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: ZooToyConfig):
        super().__init__(config)
        self.model = ZooToyModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> CausalLMOutput | tuple:
        kwargs.pop("use_cache", None)
        kwargs.pop("cache", None)
        kwargs.pop("past_key_values", None)
        kwargs.pop("cache_position", None)
        logits_to_keep = kwargs.pop("logits_to_keep", 0)
        keep = _kept_positions(logits_to_keep, input_ids if input_ids is not None else inputs_embeds)
        if keep is not None and labels is not None:
            raise ValueError("pass labels or logits_to_keep, not both: the shifted loss needs every position")
        # narrow the last block only when nobody asked for every position's attention or states
        narrow = keep is not None and not (output_attentions or output_hidden_states)
        out = self.model(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            last_block_positions=keep if narrow else None,
        )
        hidden = out.last_hidden_state
        if keep is not None and not narrow:
            hidden = hidden[:, keep]
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs
            )
        result = CausalLMOutput(
            loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions
        )
        if return_dict is False or (return_dict is None and self.config.return_dict is False):
            return result.to_tuple()
        return result


def _kept_positions(logits_to_keep, inputs: torch.Tensor) -> torch.Tensor | None:
    """transformers' `logits_to_keep` (0: all; N: the last N; a tensor: those) as positions."""
    if isinstance(logits_to_keep, torch.Tensor):
        return logits_to_keep.to(device=inputs.device, dtype=torch.long).reshape(-1)
    if not logits_to_keep:
        return None
    seq = inputs.shape[1]
    return torch.arange(max(0, seq - int(logits_to_keep)), seq, device=inputs.device)


def register_toy_model() -> None:
    """Make `AutoConfig` / `AutoModelForCausalLM` know "zoo-toy"; safe to call repeatedly."""
    AutoConfig.register(TOY_MODEL_TYPE, ZooToyConfig, exist_ok=True)
    AutoModelForCausalLM.register(ZooToyConfig, ZooToyForCausalLM, exist_ok=True)


REMOTE_CODE_FILE = "modeling_zoo_toy.py"
TRANSFORMER_LENS_FILE = "transformer_lens_zoo_toy.py"  # the adapter, beside REMOTE_CODE_FILE
_transformer_lens_done = False


def _register_transformer_lens_adapter() -> None:
    """In a snapshot's copy of this file, once TransformerLens is loaded: import the adapter the
    snapshot carries, which registers itself. Called whenever a config is built, because
    transformers runs this module once per process and TransformerLens may be imported later.

    Never imports TransformerLens itself: boot_transformers has it loaded already, and a plain
    transformers load should not pay its import (seconds) nor its logging changes. In zoo's own
    copy (no adapter beside it) this does nothing: `zoo.interp` registers the same adapter."""
    global _transformer_lens_done
    if _transformer_lens_done or "transformer_lens" not in sys.modules:
        return
    _transformer_lens_done = True
    if not Path(__file__).with_name(TRANSFORMER_LENS_FILE).is_file():
        return
    try:  # transformers copies the file this relative import names into its module cache
        from .transformer_lens_zoo_toy import register
        register()
    except Exception as exc:  # noqa: BLE001  a TransformerLens it does not fit: the model still loads
        warnings.warn(f"zoo-toy: TransformerLens adapter not registered ({exc!r}); "
                      "boot_transformers will not know ZooToyForCausalLM", stacklevel=2)


def write_remote_code(folder, config: ZooToyConfig) -> None:
    """Put this module into a model folder and point the config's `auto_map` at it, so that any
    transformers user (nnsight, TransformerLens, a Hub download) loads the folder with
    `trust_remote_code=True` and no zoo installed; beside it, a verbatim copy of the TransformerLens
    adapter (toy_transformer_lens.py beside this file, read as text, never imported here). Call
    before `config.save_pretrained(folder)`."""
    here = Path(__file__).resolve()
    Path(folder, REMOTE_CODE_FILE).write_text(here.read_text(encoding="utf-8"), encoding="utf-8")
    adapter = here.with_name("toy_transformer_lens.py")
    Path(folder, TRANSFORMER_LENS_FILE).write_text(adapter.read_text(encoding="utf-8"),
                                                   encoding="utf-8")
    module = REMOTE_CODE_FILE.removesuffix(".py")
    config.auto_map = {"AutoConfig": f"{module}.ZooToyConfig",
                       "AutoModelForCausalLM": f"{module}.ZooToyForCausalLM"}
    config.architectures = [ZooToyForCausalLM.__name__]  # what TransformerLens matches adapters by
