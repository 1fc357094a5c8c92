"""A toy-architecture snapshot carries its modeling code (config.json's auto_map), so transformers
opens it with trust_remote_code=True in a process that never imports zoo, with zoo.load's logits;
so does TransformerLens' boot_transformers (the snapshot carries our adapter too); the Hugging
Face export carries the same files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from micro_family import write_manifest
from safetensors.torch import load_file

import zoo
from training.sweep import train_family
from zoo.registry.hf_export import export_run
from zoo.store.store import Store

SIZES = [
    {"name": "attn", "layers": 2, "width": 32, "heads": 2, "attn_only": True},
    {"name": "gelu", "layers": 2, "width": 32, "heads": 2, "mlp_width": 64},
    {"name": "solu", "layers": 1, "width": 32, "heads": 2, "mlp_width": 64, "activation": "solu"},
    {"name": "reluln0", "layers": 1, "width": 32, "heads": 2, "mlp_width": 64, "activation": "relu",
     "layer_norm": False},
]
TOKENS = [[5, 17, 200, 3, 9, 44, 17, 200]]

# Run without zoo: load each folder, save its logits, and report whether zoo was ever imported.
WITHOUT_ZOO = """
import sys, torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM
out = {}
for i, path in enumerate(sys.argv[2:]):
    model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True).eval()
    with torch.no_grad():
        out[str(i)] = model(torch.tensor(%r)).logits.contiguous()
save_file(out, sys.argv[1])
print(sorted(m for m in sys.modules if m.split(".")[0] in ("zoo", "training", "data_index", "zoo_common")))
""" % (TOKENS,)


# nnsight, also without zoo: trace the folder, save a block's output and the logits.
NNSIGHT = """
import sys, torch
from nnsight import LanguageModel
from safetensors.torch import save_file
ids = torch.tensor(%r)
out = {}
for i, path in enumerate(sys.argv[2:]):
    model = LanguageModel(path, trust_remote_code=True, dispatch=True)
    with model.trace({"input_ids": ids, "attention_mask": torch.ones_like(ids)}):
        block = model.model.layers[0].output[0].save()
        logits = model.output.logits.save()
    out[str(i)], out[f"block{i}"] = logits.contiguous(), block.contiguous()
save_file(out, sys.argv[1])
print(sorted(m for m in sys.modules if m.split(".")[0] in ("zoo", "training", "data_index", "zoo_common")))
""" % (TOKENS,)

# TransformerLens without zoo: a finder placed first makes our packages unimportable (zoo is
# installed editable, so a foreign cwd alone would not hide it). The first folder is opened with
# plain transformers before TransformerLens is imported (it must not import TransformerLens), so
# its modeling module is already loaded when boot_transformers builds its config.
WITHOUT_ZOO_TL = f"TOKENS = {TOKENS!r}\n" + """
import importlib.abc, sys
OURS = ("zoo", "training", "data_index", "zoo_common")
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in OURS:
            raise ImportError(f"{name} is hidden from this process")
sys.meta_path.insert(0, Hide())
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM
AutoModelForCausalLM.from_pretrained(sys.argv[2], trust_remote_code=True)
assert "transformer_lens" not in sys.modules
from transformer_lens.model_bridge import TransformerBridge
out, adapters = {}, set()
for i, path in enumerate(sys.argv[2:]):
    bridge = TransformerBridge.boot_transformers(path, trust_remote_code=True, device="cpu")
    with torch.no_grad():
        logits, cache = bridge.run_with_cache(torch.tensor(TOKENS))
    assert "blocks.0.attn.hook_pattern" in cache
    out[str(i)] = logits.contiguous()
    adapters.add(type(bridge.adapter).__module__.rpartition(".")[2])
save_file(out, sys.argv[1])
print(sorted(adapters))
print(sorted(m for m in sys.modules if m.split(".")[0] in OURS))
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("selfcontained")
    os.environ["ZOO_CACHE"] = str(folder / "cache")
    store = Store.open(str(folder / "store"))
    manifest = write_manifest(folder, architecture="toy", sizes=SIZES, seeds=[1], steps=4,
                              checkpoints={"log_spaced_until": 4, "every": 4, "keyframe_every": 4})
    train_family(manifest, store=store, threads=2, progress=False)
    yield folder, store
    os.environ.pop("ZOO_CACHE", None)


def _without_zoo(folder, paths, script=WITHOUT_ZOO) -> tuple[dict, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str(folder / "hf-modules")
    out_file = folder / "logits.safetensors"
    done = subprocess.run([sys.executable, "-c", script, str(out_file), *map(str, paths)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    return load_file(out_file), done.stdout.strip()


def test_a_toy_snapshot_opens_without_zoo_with_zoo_loads_logits(trained):
    folder, store = trained
    paths, expected = [], []
    for size in SIZES:
        name = f"micro-{size['name']}"
        path = zoo.snapshot(name, seed=1, step=4, store=store)
        config = json.loads((path / "config.json").read_text())
        assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_zoo_toy.ZooToyForCausalLM"
        assert config["architectures"] == ["ZooToyForCausalLM"]
        assert (path / "modeling_zoo_toy.py").is_file() and (path / "transformer_lens_zoo_toy.py").is_file()
        model, _ = zoo.load(name, seed=1, step=4, store=store)
        with torch.no_grad():
            expected.append(model(torch.tensor(TOKENS)).logits)
        paths.append(path)
    logits, imported = _without_zoo(folder, paths)
    assert imported == "[]"  # nothing of ours was imported
    for i, want in enumerate(expected):
        assert torch.equal(logits[str(i)], want), SIZES[i]["name"]


def test_nnsight_traces_every_toy_variant_without_zoo(trained):
    pytest.importorskip("nnsight", reason="nnsight is the optional extra model-zoo[nnsight] (CI installs it)")
    folder, store = trained
    names = [f"micro-{size['name']}" for size in SIZES]
    paths = [zoo.snapshot(name, seed=1, step=4, store=store) for name in names]
    saved, imported = _without_zoo(folder, paths, NNSIGHT)
    assert imported == "[]"
    for i, name in enumerate(names):
        model, _ = zoo.load(name, seed=1, step=4, store=store)
        block = []
        handle = model.model.layers[0].register_forward_hook(lambda m, args, out: block.append(out[0]))
        with torch.no_grad():
            logits = model(torch.tensor(TOKENS)).logits
        handle.remove()
        assert torch.equal(saved[str(i)], logits), name
        assert torch.equal(saved[f"block{i}"], block[0]), name  # the first block's residual output


def test_transformer_lens_boots_every_toy_variant_without_zoo(trained):
    pytest.importorskip("transformer_lens", reason="TransformerLens 4 is the optional extra model-zoo[tl]")
    from transformers.dynamic_module_utils import get_imports

    folder, store = trained
    names = [f"micro-{size}" for size in ("attn", "gelu", "solu")]
    paths = [zoo.snapshot(name, seed=1, step=4, store=store) for name in names]
    exported = export_run("micro-gelu", seed=1, to=folder / "export-tl", store=store, progress=False)
    paths.append(exported / "step4")
    names.append("micro-gelu")
    source = (Path(zoo.__file__).parent / "models" / "toy_transformer_lens.py").read_bytes()
    for path in paths:  # one source, copied verbatim; Hub downloads check only imports outside `try`
        assert (path / "transformer_lens_zoo_toy.py").read_bytes() == source
        assert "transformer_lens" not in get_imports(path / "transformer_lens_zoo_toy.py")
    logits, printed = _without_zoo(folder, paths, WITHOUT_ZOO_TL)
    adapters, imported = printed.splitlines()[-2:]
    assert imported == "[]"  # nothing of ours was imported
    assert adapters == "['transformer_lens_zoo_toy']"  # the snapshot's copy of the adapter
    for i, name in enumerate(names):
        model, _ = zoo.load(name, seed=1, step=4, store=store)
        with torch.no_grad():
            want = model(torch.tensor(TOKENS)).logits
        assert (logits[str(i)] - want).abs().max() <= 1e-4, name


def test_the_export_carries_the_modeling_code_too(trained):
    folder, store = trained
    exported = export_run("micro-solu", seed=1, to=folder / "export", store=store, progress=False)
    assert (exported / "main" / "modeling_zoo_toy.py").is_file()
    assert (exported / "main" / "transformer_lens_zoo_toy.py").is_file()
    assert 'trust_remote_code=True)' in (exported / "README.md").read_text()
    logits, _ = _without_zoo(folder, [exported / "step4"])
    model, _ = zoo.load("micro-solu", seed=1, step=4, store=store)
    with torch.no_grad():
        assert torch.equal(logits["0"], model(torch.tensor(TOKENS)).logits)


def test_gpt_neox_snapshots_stay_stock_with_no_remote_code(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    store = Store.open(str(tmp_path / "store"))
    manifest = write_manifest(tmp_path, seeds=[1], steps=4,
                              checkpoints={"log_spaced_until": 4, "every": 4, "keyframe_every": 4})
    train_family(manifest, store=store, threads=2, progress=False)
    path = zoo.snapshot("micro-1l32", seed=1, step=4, store=store)
    assert "auto_map" not in json.loads((path / "config.json").read_text())
    assert not list(path.glob("*.py"))


def test_a_snapshot_cached_before_the_modeling_code_is_rebuilt_with_it(trained):
    folder, store = trained
    for step in (4, 3):  # a stored step, and a replayed one
        path = zoo.snapshot("micro-attn", seed=1, step=step, store=store)
        record = json.loads((path / "zoo_snapshot.json").read_text())
        del record["format"]  # as an earlier version wrote it
        (path / "zoo_snapshot.json").write_text(json.dumps(record))
        (path / "modeling_zoo_toy.py").unlink()
        (path / "transformer_lens_zoo_toy.py").unlink()
        rebuilt = zoo.snapshot("micro-attn", seed=1, step=step, store=store)
        assert (rebuilt / "modeling_zoo_toy.py").is_file(), step
        assert (rebuilt / "transformer_lens_zoo_toy.py").is_file(), step
