"""TransformerLens 4: every toy variant (and GPT-NeoX) opens as a TransformerBridge with
TransformerLens' hook names, zoo.load's logits, live attention hooks, and compatibility mode."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from micro_family import write_manifest

pytest.importorskip("transformer_lens", reason="TransformerLens 4 is the optional extra model-zoo[tl] (CI installs it)")

import zoo
from training.sweep import train_family
from zoo.interp.transformer_lens_loading import load_transformer_lens, transformer_lens_sweep
from zoo.store.store import Store

SIZES = [
    {"name": "attn", "layers": 2, "width": 32, "heads": 2, "attn_only": True},
    {"name": "gelu", "layers": 2, "width": 32, "heads": 2, "mlp_width": 64},
    {"name": "solu", "layers": 1, "width": 32, "heads": 2, "mlp_width": 64, "activation": "solu"},
    {"name": "reluln0", "layers": 1, "width": 32, "heads": 2, "mlp_width": 64, "activation": "relu",
     "layer_norm": False},
]
TOKENS = torch.tensor([[5, 17, 200, 3, 9, 44, 17, 200, 3, 9]])
CHECKPOINTS = {"log_spaced_until": 4, "every": 4, "keyframe_every": 4}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tl")
    os.environ["ZOO_CACHE"] = str(folder / "cache")
    store = Store.open(str(folder / "store"))
    train_family(write_manifest(folder, architecture="toy", sizes=SIZES, seeds=[1, 2], steps=8,
                                checkpoints=CHECKPOINTS), store=store, threads=2, progress=False)
    for architecture in ("gpt-neox", "llama"):
        train_family(write_manifest(folder, name=f"{architecture}.yaml", family={"gpt-neox": "neox"}.get(architecture, architecture),
                                    architecture=architecture, seeds=[1], steps=4, checkpoints=CHECKPOINTS),
                     store=store, threads=2, progress=False)
    yield store
    os.environ.pop("ZOO_CACHE", None)


def _logits(name, store, step=8, seed=1):
    model, _ = zoo.load(name, seed=seed, step=step, store=store)
    with torch.no_grad():
        return model(TOKENS).logits, model(TOKENS, output_attentions=True).attentions


@pytest.mark.parametrize("size", [s["name"] for s in SIZES])
def test_every_toy_variant_opens_with_tl_hook_names_and_zoo_loads_logits(store, size):
    name = f"micro-{size}"
    want, attentions = _logits(name, store)
    bridge = load_transformer_lens(name, seed=1, step=8, store=store)
    with torch.no_grad():
        logits, cache = bridge.run_with_cache(TOKENS)
    assert (logits - want).abs().max() < 1e-4
    for hook in ("hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre", "blocks.0.attn.hook_q",
                 "blocks.0.attn.hook_z", "blocks.0.attn.hook_attn_scores", "blocks.0.attn.hook_pattern",
                 "blocks.0.hook_attn_out", "blocks.0.hook_resid_post"):
        assert hook in cache, hook
    assert cache["blocks.0.attn.hook_z"].shape == (1, TOKENS.shape[1], 2, 16)  # [batch, pos, head, d_head]
    assert torch.allclose(cache["blocks.0.attn.hook_pattern"], attentions[0], atol=1e-6)
    assert not torch.allclose(cache["blocks.0.attn.hook_attn_scores"], cache["blocks.0.attn.hook_pattern"])
    if size != "attn":
        assert "blocks.0.mlp.hook_pre" in cache and "blocks.0.mlp.hook_post" in cache
    if size == "solu":
        assert "blocks.0.mlp.hook_mid" in cache  # SoLU's value before its LayerNorm
    compatible = load_transformer_lens(name, seed=1, step=8, store=store, compatibility_mode=True)
    with torch.no_grad():
        folded = compatible(TOKENS)
    assert (folded.log_softmax(-1) - want.log_softmax(-1)).abs().max() < 1e-4


def test_an_edited_pattern_changes_the_output(store):
    bridge = load_transformer_lens("micro-attn", seed=1, step=8, store=store)

    def to_self(pattern, hook):  # every query attends to itself only
        return torch.eye(pattern.shape[-1]).expand_as(pattern).clone()

    with torch.no_grad():
        plain = bridge(TOKENS)
        edited = bridge.run_with_hooks(TOKENS, fwd_hooks=[("blocks.1.attn.hook_pattern", to_self)])
        again = bridge(TOKENS)
    assert (plain - edited).abs().max() > 1e-5  # a discarded edit would leave them equal
    assert torch.equal(plain, again)  # and the hook is gone afterwards


@pytest.mark.parametrize("name", ["neox-1l32", "llama-1l32"])
def test_gpt_neox_and_llama_open_with_transformer_lens_own_adapters(store, name):
    want, _ = _logits(name, store, step=4)
    bridge = load_transformer_lens(name, seed=1, step=4, store=store)
    with torch.no_grad():
        logits, cache = bridge.run_with_cache(TOKENS)
    assert (logits - want).abs().max() < 1e-4 and "blocks.0.attn.hook_pattern" in cache
    want, _ = _logits(name, store, step=3)  # not stored: replayed
    with torch.no_grad():
        assert (load_transformer_lens(name, seed=1, step=3, store=store)(TOKENS) - want).abs().max() < 1e-4


def test_a_replayed_step_opens_and_no_bos_is_prepended(store):
    want, _ = _logits("micro-gelu", store, step=6)  # between checkpoints 4 and 8: replayed
    bridge = load_transformer_lens("micro-gelu", seed=1, step=6, store=store)
    with torch.no_grad():
        assert (bridge(TOKENS) - want).abs().max() < 1e-4
    want, _ = _logits("neox-1l32", store, step=4)
    bridge = load_transformer_lens("neox-1l32", seed=1, step=4, store=store)
    with torch.no_grad():
        assert (bridge(TOKENS) - want).abs().max() < 1e-4
    _, tokenizer = zoo.load("neox-1l32", seed=1, step=4, store=store)
    text = "Return the sum of a and b."
    assert bridge.to_tokens(text)[0].tolist() == tokenizer(text)["input_ids"]  # no BOS: as trained


def test_the_sweep_visits_every_seed_and_step_with_each_steps_weights(store):
    seen = []
    for seed, step, bridge in transformer_lens_sweep("micro-attn", store=store):
        want, _ = _logits("micro-attn", store, step=step, seed=seed)
        with torch.no_grad():
            assert (bridge(TOKENS) - want).abs().max() < 1e-4
        seen.append((seed, step))
    assert seen == [(s, t) for s in (1, 2) for t in zoo.steps("micro-attn", seed=s, store=store)]


def test_boot_transformers_opens_a_snapshot_folder_with_our_entry_point_adapter(store):
    """Nothing of zoo imported by hand: the folder's remote code registers the adapter, and with zoo
    installed TransformerLens' entry point supplies zoo's copy of it. The toy model itself comes
    from the folder's remote code. (Without zoo at all: test_self_contained_snapshots.py.)"""
    from importlib.metadata import entry_points

    [point] = [e for e in entry_points(group="transformer_lens.architectures") if e.name == "ZooToyForCausalLM"]
    assert point.value == "zoo.models.toy_transformer_lens:ZooToyArchitectureAdapter"
    path = zoo.snapshot("micro-solu", seed=1, step=8, store=store)
    code = (
        "import sys, torch\n"
        "from transformer_lens.model_bridge import TransformerBridge\n"
        f"bridge = TransformerBridge.boot_transformers({str(path)!r}, trust_remote_code=True)\n"
        f"print(bridge(torch.tensor({TOKENS.tolist()!r})).sum().item())\n"
        "print(type(bridge.adapter).__module__)\n"
        "print('zoo.models.toy' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_MODULES_CACHE": str(path.parent / "hf-modules")})
    assert done.returncode == 0, done.stderr[-3000:]
    want, _ = _logits("micro-solu", store)
    total, adapter, registered = done.stdout.strip().splitlines()[-3:]
    assert adapter == "zoo.models.toy_transformer_lens"  # the entry point's, loaded by TL
    assert registered == "False"  # the model class came from the folder, not from zoo
    assert abs(float(total) - want.sum().item()) < 1e-2


def test_without_transformer_lens_one_clear_message(monkeypatch):
    import builtins

    from zoo_common.errors import ZooError

    real_import = builtins.__import__

    def no_tl(name, *args, **kwargs):
        if name.startswith("transformer_lens"):
            raise ImportError("No module named 'transformer_lens'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tl)
    with pytest.raises(ZooError, match=r"optional extra: pip install 'model-zoo\[tl\]'"):
        load_transformer_lens("micro-attn", seed=1, step=8)


def test_branch_is_a_keyword_of_the_transformer_lens_loaders_too(store, capsys):
    from training.branching import branch

    branch("micro-attn", seed=1, from_step=4, label="slow", store=store, progress=False,
           lr_scale=0.5)
    bridge = zoo.load_transformer_lens("micro-attn", seed=1, step=8, store=store, branch="slow")
    model, _ = zoo.load("micro-attn", seed=1, step=8, store=store, branch="slow")
    with torch.no_grad():
        assert torch.allclose(bridge(TOKENS), model(TOKENS).logits, atol=1e-4)
        parent, _ = zoo.load("micro-attn", seed=1, step=8, store=store)
        assert not torch.allclose(bridge(TOKENS), parent(TOKENS).logits, atol=1e-4)
    capsys.readouterr()
    steps = [step for _, step, _ in zoo.transformer_lens_sweep("micro-attn", seeds=[1], store=store,
                                                                branch="slow")]
    assert steps == zoo.steps("micro-attn", seed=1, store=store, branch="slow")
    assert "Loading weights" not in capsys.readouterr().err  # transformers' bar stays quiet


def test_a_sweep_of_a_branch_visits_the_seeds_that_have_it(store):
    """Only seed 1 has branch `slow`: the sweep's default seeds are the branch's, by either
    spelling (branch= or name@label); a label no seed has is named."""
    from training.branching import branch

    if "slow" not in {m.name: m for m in zoo.list_models(store=store)}["micro-attn"].branches:
        branch("micro-attn", seed=1, from_step=4, label="slow", store=store, progress=False,
               lr_scale=0.5)
    for options in ({"branch": "slow"}, {}):
        name = "micro-attn" if options else "micro-attn@slow"
        visited = [(seed, step) for seed, step, _ in transformer_lens_sweep(name, store=store, **options)]
        assert visited == [(1, s) for s in zoo.steps("micro-attn", seed=1, store=store, branch="slow")]
    model, _ = zoo.load("micro-attn@slow", seed=1, step=8, store=store)
    bridge = load_transformer_lens("micro-attn@slow", seed=1, step=8, store=store)
    with torch.no_grad():
        assert torch.allclose(bridge(TOKENS), model(TOKENS).logits, atol=1e-4)
    with pytest.raises(zoo.BranchNotFoundError, match="no branch 'ghost' of micro-attn .*branches: slow"):
        next(transformer_lens_sweep("micro-attn", store=store, branch="ghost"))
