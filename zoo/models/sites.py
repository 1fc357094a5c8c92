"""Sites: the activations a dictionary reads, named as TransformerLens names them or by module path.

    blocks.L.hook_resid_post   the residual stream after block L     (model.layers.L's output)
    blocks.L.mlp.hook_post     block L's MLP hidden neurons          (the input of its down-projection)
    blocks.L.hook_attn_out     block L's attention output
    blocks.L.hook_mlp_out      block L's MLP output
    hidden                     the superposition model's h = W x

A module path of the model (`model.layers.1`, `gpt_neox.layers.0.mlp`) names its output, and
`PATH:input` its input; where a TransformerLens name exists for it, the site is recorded under
that name. Activations are captured with forward hooks on the stock modules (no code of ours in
the model), every position of every sequence, as float32 [tokens, width].
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from zoo_common.errors import ArgumentError

# model type -> {TransformerLens-style kind: (module path with {L}, "output" | "input")}
_LAYOUTS = {
    "zoo-toy": {
        "hook_resid_post": ("model.layers.{L}", "output"),
        "mlp.hook_post": ("model.layers.{L}.mlp.down_proj", "input"),
        "hook_attn_out": ("model.layers.{L}.attn", "output"),
        "hook_mlp_out": ("model.layers.{L}.mlp", "output"),
    },
    "gpt_neox": {
        "hook_resid_post": ("gpt_neox.layers.{L}", "output"),
        "mlp.hook_post": ("gpt_neox.layers.{L}.mlp.dense_4h_to_h", "input"),
        "hook_attn_out": ("gpt_neox.layers.{L}.attention", "output"),
        "hook_mlp_out": ("gpt_neox.layers.{L}.mlp", "output"),
    },
    "llama": {
        "hook_resid_post": ("model.layers.{L}", "output"),
        "mlp.hook_post": ("model.layers.{L}.mlp.down_proj", "input"),  # act(gate) * up
        "hook_attn_out": ("model.layers.{L}.self_attn", "output"),
        "hook_mlp_out": ("model.layers.{L}.mlp", "output"),
    },
}
_TL_NAME = re.compile(r"blocks\.(\d+)\.(hook_resid_post|mlp\.hook_post|hook_attn_out|hook_mlp_out)")
HIDDEN = "hidden"  # the superposition model's hidden vector
SUPERPOSITION = "zoo-superposition"


@dataclass(frozen=True)
class Site:
    """Where activations are read: `name` as recorded, `module` and `capture` to hook it."""

    name: str
    module: str  # dotted module path; "" for the superposition model's hidden vector
    capture: str  # "output" or "input"
    width: int

    @property
    def slug(self) -> str:
        """The site in a file name: letters, digits, '.', '_' and '-' only."""
        return re.sub(r"[^A-Za-z0-9._-]", "_", self.name.replace(":", "-"))


def valid_sites(hf_config: dict) -> list[str]:
    """The TransformerLens-style sites of a model (what error messages list)."""
    model_type = hf_config.get("model_type")
    if model_type == SUPERPOSITION:
        return [HIDDEN]
    layers = hf_config.get("num_hidden_layers", 0)
    kinds = list(_LAYOUTS.get(model_type, {}))
    if hf_config.get("attn_only"):
        kinds = [k for k in kinds if "mlp" not in k]
    return [f"blocks.{layer}.{kind}" for layer in range(layers) for kind in kinds]


def resolve_site(name: str, model: torch.nn.Module) -> Site:
    """The Site of `name` (a TransformerLens-style name or a module path) on `model`; an
    ArgumentError listing the valid sites otherwise."""
    config = model.config.to_dict()
    model_type = config.get("model_type")
    if not isinstance(name, str) or not name:
        raise ArgumentError(f"a site is a name such as {_examples(config)}, got {name!r}")
    if model_type == SUPERPOSITION:
        if name != HIDDEN:
            raise ArgumentError(f"the superposition model has one site, {HIDDEN!r} (h = W x); got {name!r}")
        return Site(HIDDEN, "", "output", int(config["hidden_size"]))
    layout = _LAYOUTS.get(model_type)
    if layout is None:
        raise ArgumentError(f"no sites are known for model type {model_type!r}")
    match = _TL_NAME.fullmatch(name)
    if match:
        layer, kind = int(match[1]), match[2]
        if name not in valid_sites(config):
            raise ArgumentError(f"{model_type} model has no site {name!r}; valid: "
                                f"{', '.join(valid_sites(config))}")
        path, capture = layout[kind]
        return _sized(name, path.format(L=layer), capture, model)
    path, _, capture = name.partition(":")
    capture = capture or "output"
    if capture not in ("output", "input") or path not in dict(model.named_modules()):
        raise ArgumentError(f"unknown site {name!r}: give a site ({', '.join(valid_sites(config))}) "
                            f"or a module path of the model, optionally ':input'")
    for kind, (pattern, how) in layout.items():  # a module path TransformerLens has a name for
        found = re.fullmatch(pattern.replace(".", r"\.").replace("{L}", r"(\d+)"), path)
        if found and how == capture:
            return _sized(f"blocks.{found[1]}.{kind}", path, capture, model)
    return _sized(name, path, capture, model)


def _examples(config: dict) -> str:
    return ", ".join(valid_sites(config)[:3]) or HIDDEN


def _sized(name: str, path: str, capture: str, model: torch.nn.Module) -> Site:
    width = _probe_width(model, path, capture)
    return Site(name, path, capture, width)


def _probe_width(model, path: str, capture: str) -> int:
    """The site's width, read from one forward pass on two tokens."""
    with capturing(model, Site("probe", path, capture, 0)) as seen, torch.no_grad():
        model(input_ids=torch.zeros(1, 2, dtype=torch.long))
    return int(seen[0].shape[-1])


@contextmanager
def capturing(model: torch.nn.Module, site: Site):
    """A list that fills with the site's activations [.., width] on each forward pass."""
    seen: list[torch.Tensor] = []
    module = dict(model.named_modules())[site.module]

    def first(value):
        return value[0] if isinstance(value, tuple) else value

    if site.capture == "input":
        handle = module.register_forward_pre_hook(lambda mod, args: seen.append(first(args).detach()))
    else:
        handle = module.register_forward_hook(lambda mod, args, out: seen.append(first(out).detach()))
    try:
        yield seen
    finally:
        handle.remove()
