"""`zoo.load`: a stored or replayed step as a stock `transformers` model and its tokenizer.

One load path: the step's snapshot folder (snapshots.py), opened with `from_pretrained`, exactly
as anyone without our package would open it.
"""
from __future__ import annotations

import os
from pathlib import Path

from zoo_common.arguments import whole_number
from zoo.environment import check_device
from zoo.registry.snapshots import run_snapshot
from zoo.store.catalog import open_run
from zoo.store.store import Store


def load(name: str, *, seed: int, step: int, store: str | os.PathLike | Store | None = None,
         device: str = "cpu", progress: bool = False, branch: str | None = None):
    """(model, tokenizer): a stock transformers causal LM in eval mode on `device`, and its
    tokenizer; `branch=LABEL` reads that branch of the run (steps before its branch point are the
    parent's). Quiet by default; `progress=True` shows transformers' and replay's bars."""
    step, device = whole_number(step, "step"), check_device(device)
    run = open_run(name, seed=seed, store=store, branch=branch)
    folder = run_snapshot(run, step, progress=progress)
    return open_snapshot(folder, device=device, progress=progress)


def open_snapshot(folder: os.PathLike, *, device: str = "cpu", progress: bool = False):
    """(model, tokenizer) of a snapshot folder, eager attention (the same numerics as training);
    the superposition model reads feature vectors, not tokens: its tokenizer is None."""
    import json

    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from zoo.models.own_types import register_own_models, takes_tokens

    register_own_models()  # snapshots of our own architectures name them as their model type
    model_type = json.loads((Path(folder) / "config.json").read_text())["model_type"]
    bars_were_on = hf_logging.is_progress_bar_enabled()
    if not progress and bars_were_on:
        hf_logging.disable_progress_bar()
    try:
        if takes_tokens(model_type):
            model = AutoModelForCausalLM.from_pretrained(folder, dtype="auto",
                                                         attn_implementation="eager")
        else:
            model = AutoModel.from_pretrained(folder, dtype="auto")
    finally:
        if not progress and bars_were_on:
            hf_logging.enable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(folder) if takes_tokens(model_type) else None
    return model.to(device).eval(), tokenizer
