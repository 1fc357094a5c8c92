"""Export follows Pythia's layout: one folder per run, a complete HF folder per `step<N>` whose
weights are that step's (never the final ones), `main` = the final step, a model card; and the
registry commands (snapshot, history, export) work from the command line with clear errors."""
from __future__ import annotations

import argparse
import json

import pytest
import torch
from micro_family import write_manifest
from safetensors.torch import load_file

import zoo
from zoo_common.errors import ZooError
from training.sweep import train_family
from zoo.cli import registry as cli_registry
from zoo.registry.hf_export import export_run
from zoo.config.names import RunId
from zoo.store.store import Store

NAME = "micro-1l32"
QKV = "gpt_neox.layers.0.attention.query_key_value.weight"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    store = Store.open(str(folder / "store"))
    train_family(write_manifest(folder, seeds=[1], steps=12), store=store, threads=2,
                 progress=False)
    return store


def test_export_writes_pythia_layout_and_every_step_loads(store, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    stored = zoo.steps(NAME, seed=1, store=store)
    assert stored == [0, 1, 2, 4, 6, 8, 12]
    folder = export_run(NAME, seed=1, to=tmp_path, store=store, progress=False)
    assert folder == tmp_path / "micro-1l32-seed1"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["README.md", "zoo_export.json", "main"] + [f"step{s}" for s in stored])
    run = store.run(RunId("micro", "1l32", 1))
    for step in stored:
        step_folder = folder / f"step{step}"
        assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= {
            p.name for p in step_folder.iterdir()}
        model = AutoModelForCausalLM.from_pretrained(step_folder)
        AutoTokenizer.from_pretrained(step_folder)
        expected = run.read_checkpoint(step).tensors
        assert all(torch.equal(t, expected[k]) for k, t in model.state_dict().items()), step
    main = load_file(folder / "main" / "model.safetensors")
    final = load_file(folder / "step12" / "model.safetensors")
    first = load_file(folder / "step6" / "model.safetensors")
    assert torch.equal(main[QKV], final[QKV]) and not torch.equal(main[QKV], first[QKV])
    record = json.loads((folder / "zoo_export.json").read_text())
    assert record["main"] == 12 and record["steps"] == stored
    assert len(set(record["sha256"].values())) == len(stored)  # no step serves another's weights
    assert not (folder / "step4" / "zoo_snapshot.json").exists()  # local paths stay private


def test_model_card_says_what_and_how(store, tmp_path):
    folder = export_run(NAME, seed=1, to=tmp_path, steps=[4], store=store, progress=False)
    assert sorted(p.name for p in folder.glob("step*")) == ["step12", "step4"]  # final always
    card = (folder / "README.md").read_text()
    record = store.run(RunId("micro", "1l32", 1)).read_json("run.json")
    for needed in ("family | micro", "size | 1l32", "seed | 1", "init_seed (weights) | 1",
                   "data_seed (data order) | 1", "4, 12", record["corpus_fingerprint"],
                   record["config_hash"], 'revision="step'):
        assert needed in card, needed
    assert (folder / "main" / "README.md").read_text() == card


def test_export_replaces_an_earlier_export_whole(store, tmp_path):
    export_run(NAME, seed=1, to=tmp_path, store=store, progress=False)
    folder = export_run(NAME, seed=1, to=tmp_path, steps=[2], store=store, progress=False)
    assert sorted(p.name for p in folder.glob("step*")) == ["step12", "step2"]
    assert [p.name for p in tmp_path.iterdir()] == ["micro-1l32-seed1"]  # no staging left


def test_export_bad_inputs(store, tmp_path):
    with pytest.raises(ZooError, match="no step 99 for micro-1l32 seed 1; stored: 0, 1, 2"):
        export_run(NAME, seed=1, to=tmp_path, steps=[99], store=store, progress=False)
    with pytest.raises(ZooError, match="seeds: 1"):
        export_run(NAME, seed=5, to=tmp_path, store=store, progress=False)
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(ZooError, match="is a file"):
        export_run(NAME, seed=1, to=afile, store=store, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="zoo")
    cli_registry.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_snapshot_history_export(store, tmp_path, capsys):
    url = store.url
    assert _cli(["snapshot", NAME, "--seed", "1", "--step", "8", "--store", url]) == 0
    assert capsys.readouterr().out.strip() == str(zoo.snapshot(NAME, seed=1, step=8, store=store))
    out_file = tmp_path / "qkv.safetensors"
    assert _cli(["history", NAME, "--seed", "1", "--tensor", QKV, "--steps", "0", "4", "12",
                 "--out", str(out_file), "--store", url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("[96, 32]") and [line.split()[0] for line in lines[2:5]] == ["0", "4", "12"]
    assert lines[2].split()[-1] == "-" and float(lines[3].split()[-1]) > 0
    saved = load_file(out_file)
    assert saved["steps"].tolist() == [0, 4, 12] and saved["values"].shape == (3, 96, 32)
    assert _cli(["export", NAME, "--seed", "1", "--to", str(tmp_path / "ex"), "--steps", "1",
                 "--store", url]) == 0
    assert (tmp_path / "ex" / "micro-1l32-seed1" / "step1" / "model.safetensors").exists()


def test_cli_errors_are_zoo_errors(store):
    with pytest.raises(ZooError, match="closest: .*query_key_value.weight"):
        _cli(["history", NAME, "--seed", "1", "--tensor", "query_key_value", "--store", store.url])
    with pytest.raises(ZooError, match="no step 300"):
        _cli(["snapshot", NAME, "--seed", "1", "--step", "300", "--store", store.url])


def test_an_export_is_a_copy_and_a_re_export_never_deletes_foreign_files(store, tmp_path,
                                                                          monkeypatch):
    """Editing an exported file must not reach the snapshot cache zoo.load serves; a folder with
    files an export did not write is refused instead of replaced."""
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    folder = export_run(NAME, seed=1, to=tmp_path / "out", store=store, progress=False)
    cached = zoo.snapshot(NAME, seed=1, step=2, store=store) / "model.safetensors"
    before = cached.read_bytes()
    with open(folder / "step2" / "model.safetensors", "r+b") as handle:  # in place, as cp does
        handle.write(b"\0" * 64)
    assert cached.read_bytes() == before
    (folder / "NOTES.md").write_text("mine")
    with pytest.raises(ZooError, match="NOTES.md"):
        export_run(NAME, seed=1, to=tmp_path / "out", store=store, progress=False)
    assert (folder / "NOTES.md").read_text() == "mine"
    stranger = tmp_path / "elsewhere" / "micro-1l32-seed1"
    stranger.mkdir(parents=True)
    with pytest.raises(ZooError, match="not a Model Zoo export"):
        export_run(NAME, seed=1, to=tmp_path / "elsewhere", store=store, progress=False)
