"""A dictionary exported with `zoo dict export` opens in SAELens (`SAE.load_from_disk`, in the
`.venv-sae` environment scripts/dev.sh builds: SAELens 6 pins TransformerLens < 4) and encodes as
`zoo.load_dict` does, within 1e-5, for both kinds."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from micro_family import write_manifest
from safetensors.torch import load_file, save_file

import zoo
from training.sweep import train_family
from zoo.cli import main
from zoo.store.store import Store

ROOT = Path(__file__).resolve().parents[1]
SAE_PYTHON = ROOT / ".venv-sae" / "bin" / "python"
NAME, SITE = "micro-1l32", "blocks.0.hook_resid_post"
OPEN = """
import sys, torch
from safetensors.torch import load_file, save_file
from sae_lens import SAE
out = {}
for i, path in enumerate(sys.argv[3:]):
    sae = SAE.load_from_disk(path, device="cpu")
    x = load_file(sys.argv[1])["x"]
    with torch.no_grad():
        out[f"z{i}"] = sae.encode(x).contiguous()
        out[f"x{i}"] = sae.decode(out[f"z{i}"]).contiguous()
    print(type(sae).__name__, sae.cfg.metadata.hook_name)
save_file(out, sys.argv[2])
"""


@pytest.mark.skipif(not SAE_PYTHON.is_file(), reason="needs .venv-sae with SAELens 6: "
                    "bash scripts/dev.sh test builds it (python3 -m venv .venv-sae; pip install "
                    "torch==2.13.0; pip install -e '.[sae]')")
def test_an_exported_dictionary_opens_in_sae_lens_and_encodes_alike(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    store = Store.open(str(tmp_path / "store"))
    train_family(write_manifest(tmp_path, seeds=[1], steps=8), store=store, threads=2, progress=False)
    url, folders, dictionaries = str(store.location.local_path()), [], []
    for kind in ("topk", "relu"):
        d = zoo.train_dict(NAME, seed=1, step=8, site=SITE, kind=kind, width=64, k=4, l1=1e-3,
                           steps=50, batch=128, store=store)
        folder = tmp_path / f"export-{kind}"
        assert main(["dict", "export", NAME, "--seed", "1", "--step", "8", "--site", SITE,
                     "--kind", kind, "--to", str(folder), "--store", url]) == 0
        assert json.loads((folder / "cfg.json").read_text())["architecture"] == {"topk": "topk", "relu": "standard"}[kind]
        folders.append(str(folder))
        dictionaries.append(d)
    x = torch.randn(32, 32, generator=torch.Generator().manual_seed(0))
    save_file({"x": x}, tmp_path / "x.safetensors")
    done = subprocess.run([str(SAE_PYTHON), "-c", OPEN, str(tmp_path / "x.safetensors"),
                           str(tmp_path / "out.safetensors"), *folders], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[:4] == ["TopKSAE", "gpt_neox.layers.0", "StandardSAE", "gpt_neox.layers.0"]
    theirs = load_file(tmp_path / "out.safetensors")
    for i, d in enumerate(dictionaries):
        with torch.no_grad():
            ours = d.encode(x)
            assert (theirs[f"z{i}"] - ours).abs().max() <= 1e-5
            assert (theirs[f"x{i}"] - d.decode(ours)).abs().max() <= 1e-5
