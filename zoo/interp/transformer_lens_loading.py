"""`zoo.load_transformer_lens` and `zoo.transformer_lens_sweep`: any run's steps as TransformerLens 4
`TransformerBridge`s, with TransformerLens' hook names and `run_with_cache`.

TransformerLens is an optional extra (`pip install 'model-zoo[tl]'`). The bridge wraps the very
model `zoo.load` returns, so its logits are zoo.load's (within float error, in fp32); every step
works, a replayed one included. GPT-NeoX and Llama runs use TransformerLens' own adapters; the toy
architecture uses ours (zoo/models/toy_transformer_lens.py).

`compatibility_mode=True` calls TransformerLens' `enable_compatibility_mode()`: HookedTransformer's
weight processing. It folds each LayerNorm's scale and bias into the weights that read from it
(SoLU's LayerNorm after the activation into W_out), centres the weights that write to the residual
stream and the unembedding (subtracting a constant from every logit of a position: log-probs and
the argmax are unchanged, raw logits are not), and splits W_QKV per head. It does not change what
the model computes up to those logit shifts, nor the attention patterns. A toy model without
LayerNorm has nothing to fold or centre.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from zoo_common.errors import BranchNotFoundError, ZooError
from zoo.store.store import Store

INSTALL_HINT = "pip install 'model-zoo[tl]'  (TransformerLens >= 4.3)"


def transformer_lens():
    """The TransformerBridge class, with our adapter registered; one clear error without it."""
    try:
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError as exc:
        raise ZooError(f"TransformerLens 4 is not installed ({exc}); it is an optional extra: "
                       f"{INSTALL_HINT}") from None
    from zoo.models import toy_transformer_lens  # noqa: F401  registers the toy adapter

    return TransformerBridge


def load_transformer_lens(name: str, *, seed: int, step: int, store: str | os.PathLike | Store | None = None,
                          device: str = "cpu", compatibility_mode: bool = False, progress: bool = False,
                          branch: str | None = None):
    """A TransformerBridge of (name, seed, step) (of its branch `branch`); `compatibility_mode` as
    the module docstring says."""
    from zoo.registry.loading import load

    transformer_lens()
    model, tokenizer = load(name, seed=seed, step=step, store=store, device=device, progress=progress,
                            branch=branch)
    return bridge_of(model, tokenizer, compatibility_mode=compatibility_mode)


def bridge_of(model, tokenizer, *, compatibility_mode: bool = False):
    """A TransformerBridge around an HF model zoo loaded (no second read from disk)."""
    transformer_lens()
    from transformer_lens.model_bridge.sources import build_bridge_from_module

    architecture = (model.config.architectures or [type(model).__name__])[0]
    bridge = build_bridge_from_module(model, architecture, hf_config=model.config, tokenizer=tokenizer)
    bridge.cfg.default_prepend_bos = False  # zoo samples start with text, never a BOS token
    if compatibility_mode:
        bridge.enable_compatibility_mode()
    return bridge


@contextmanager
def quiet_transformers():
    """transformers' progress bars off for a while (a sweep loads one model after another)."""
    from transformers.utils import logging as hf_logging

    were_on = hf_logging.is_progress_bar_enabled()
    if were_on:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if were_on:
            hf_logging.enable_progress_bar()


def transformer_lens_sweep(name: str, *, seeds: Iterable[int] | None = None, steps: Iterable[int] | None = None,
                           store: str | os.PathLike | Store | None = None, device: str = "cpu",
                           compatibility_mode: bool = False,
                           branch: str | None = None) -> Iterator[tuple[int, int, object]]:
    """(seed, step, bridge) over a model's runs (their branch `branch`, also written name@label):
    every seed (of a branch: every seed that has it) and stored step unless given.

    Per seed, the tokenizer and config are read once. Without compatibility mode the bridge is
    built once too, and each further step copies its weights into the parameters the bridge wraps
    (every tensor, same names and shapes), so the yielded bridge is the same object with new
    weights: measure, then move on. Compatibility mode rewrites the weights (folding, centring),
    so there each step gets a fresh model and bridge, still without re-reading tokenizer or config."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zoo.config.names import split_branch
    from zoo.registry.snapshots import run_snapshot
    from zoo.store.catalog import list_models, open_run, open_store

    transformer_lens()
    store = open_store(store)
    if seeds is None:
        base, label = split_branch(name, branch)
        known = {info.name: info for info in list_models(store=store)}
        if base not in known:
            raise ZooError(f"no model {base!r} in store {store.url}; models: {', '.join(known) or 'none'}")
        seeds = known[base].branches.get(label, ()) if label else known[base].seeds
        if not seeds:
            raise BranchNotFoundError(
                f"no branch {label!r} of {base} in store {store.url}; its branches: "
                f"{', '.join(known[base].branches) or 'none (make one with `zoo branch`)'}")
    for seed in seeds:
        run = open_run(name, seed=seed, store=store, branch=branch)
        tokenizer = config = bridge = parameters = None
        for step in (list(steps) if steps is not None else run.checkpoint_steps()):
            folder = Path(run_snapshot(run, step))
            if tokenizer is None:
                tokenizer = AutoTokenizer.from_pretrained(folder)
            if bridge is None or compatibility_mode:
                with quiet_transformers():  # its "Loading weights" bar, once per step otherwise
                    model = AutoModelForCausalLM.from_pretrained(folder, config=config,
                                                                 attn_implementation="eager")
                config, model = model.config, model.to(device).eval()
                parameters = dict(model.named_parameters())  # the objects the bridge will wrap
                bridge = bridge_of(model, tokenizer, compatibility_mode=compatibility_mode)
            else:
                tensors = load_file(folder / "model.safetensors")
                if set(tensors) != set(parameters):
                    raise ZooError(f"{name} seed {seed} step {step}: its tensors are not the model's "
                                   f"parameters ({sorted(set(tensors) ^ set(parameters))[:3]} differ)")
                with torch.no_grad():
                    for key, tensor in tensors.items():
                        parameters[key].copy_(tensor)
            yield seed, step, bridge
