"""A GELU, ReLU or attention-only toy model in its stock form (GPT2LMHeadModel): it opens with
AutoModelForCausalLM and no remote code, and in TransformerLens' own GPT-2 adapter, with logits
within 1e-5 of the toy model's; SoLU and no-LayerNorm models are refused with why."""
from __future__ import annotations

import json

import pytest
import torch
from micro_family import write_manifest
from transformers import AutoModelForCausalLM

import zoo
from training.sweep import train_family
from zoo.store.store import Store

SIZES = [
    {"name": "gelu", "layers": 2, "width": 32, "heads": 2, "mlp_width": 64, "activation": "gelu"},
    {"name": "relu", "layers": 1, "width": 32, "heads": 2, "mlp_width": 64, "activation": "relu"},
    {"name": "attn", "layers": 2, "width": 32, "heads": 2, "attn_only": True},
    {"name": "solu", "layers": 1, "width": 32, "heads": 2, "mlp_width": 64, "activation": "solu"},
]
TOKENS = torch.tensor([[5, 17, 200, 3, 9, 44, 17, 200, 3, 9, 44, 17]])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stock")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_CACHE", str(folder / "cache"))
        store = Store.open(str(folder / "store"))
        train_family(write_manifest(folder, architecture="toy", sizes=SIZES, seeds=[1], steps=6),
                     store=store, threads=2, progress=False)
        yield store


@pytest.mark.parametrize("size", ["gelu", "relu", "attn"])
def test_a_toy_model_in_gpt2_form_opens_without_remote_code(store, size):
    name = f"micro-{size}"
    toy, _ = zoo.load(name, seed=1, step=6, store=store)
    folder = zoo.snapshot(name, seed=1, step=6, store=store, stock=True)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "gpt2" and "auto_map" not in config
    assert not list(folder.glob("*.py"))
    stock = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert type(stock).__name__ == "GPT2LMHeadModel"
    with torch.no_grad():
        assert (stock(TOKENS).logits - toy(TOKENS).logits).abs().max() <= 1e-5
    assert zoo.snapshot(name, seed=1, step=6, store=store, stock=True) == folder  # cached
    tl = pytest.importorskip("transformer_lens.model_bridge", reason="TransformerLens 4 (the tl extra)")
    bridge = tl.TransformerBridge.boot_transformers(str(folder), device="cpu")
    with torch.no_grad():
        assert (bridge(TOKENS) - toy(TOKENS).logits).abs().max() <= 1e-5


def test_models_without_a_stock_form_are_refused_with_why(store):
    with pytest.raises(zoo.ArgumentError, match="solu toy model has no stock form"):
        zoo.snapshot("micro-solu", seed=1, step=6, store=store, stock=True)
