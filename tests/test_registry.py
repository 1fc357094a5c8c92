"""The registry serves stock transformers models by name / seed / step: the right weights (logits
equal the stored tensors'), a snapshot folder any HF tool opens without our package, a cache that
is reused and never stale, steps in integer order, and errors that list what exists."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from micro_family import write_manifest

import zoo
from zoo_common.errors import ZooError
from training.sweep import train_family
from zoo.config.run_config import RunConfig
from zoo.models.build import build_model
from zoo.config.names import RunId
from zoo.store.store import Store

NAME = "micro-1l32"
# log-spaced up to 16 and every 6: as strings these would sort 0, 1, 12, 16, 18, 2, 24, 4, 6, 8
STORED = [0, 1, 2, 4, 6, 8, 12, 16, 18, 24]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two seeds of the micro family; snapshots are cached per store URL, so this store's own."""
    folder = tmp_path_factory.mktemp("registry")
    store = Store.open(str(folder / "store"))
    checkpoints = {"log_spaced_until": 16, "every": 6, "keyframe_every": 8}
    train_family(write_manifest(folder, seeds=[1, 2], checkpoints=checkpoints), store=store,
                 threads=2, progress=False)
    return store


def _tokens(vocab: int = 512) -> torch.Tensor:
    return torch.arange(2 * 16).reshape(2, 16) * 37 % vocab


def _reference_model(store: Store, step: int):
    run = store.run(RunId("micro", "1l32", 1))
    record = run.read_json("run.json")
    cfg = RunConfig.from_json(record["config"])
    model = build_model(cfg, vocab_size=record["hf_config"]["vocab_size"],
                        eos_token_id=record["hf_config"]["eos_token_id"])
    model.load_state_dict(run.read_checkpoint(step).tensors)
    return model.eval()


def test_load_returns_stock_model_and_tokenizer(store):
    from transformers import GPTNeoXForCausalLM, PreTrainedTokenizerBase

    model, tokenizer = zoo.load(NAME, seed=1, step=12, store=store)
    assert type(model) is GPTNeoXForCausalLM and not model.training
    assert isinstance(tokenizer, PreTrainedTokenizerBase)
    assert tokenizer.decode(tokenizer("def f(x): return x")["input_ids"]).startswith("def f")


def test_logits_equal_those_of_the_stored_checkpoint(store):
    tokens = _tokens()
    with torch.no_grad():
        expected = _reference_model(store, 12)(tokens).logits
        cold, _ = zoo.load(NAME, seed=1, step=12, store=store)  # cached after the first test
        other, _ = zoo.load(NAME, seed=1, step=24, store=store)
        assert torch.equal(cold(tokens).logits, expected)
        assert not torch.equal(other(tokens).logits, expected)


def test_training_a_loaded_model_in_place_leaves_its_cached_snapshot_intact(
        store, tmp_path, monkeypatch):
    """A loaded model's weights may map the snapshot file (from_pretrained's are copy-on-write):
    changing them must never reach the file the next load reads."""
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path))
    model, _ = zoo.load(NAME, seed=2, step=8, store=store)
    weights = next((tmp_path).rglob("step-8/model.safetensors"))
    before = weights.read_bytes()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    assert weights.read_bytes() == before
    again, _ = zoo.load(NAME, seed=2, step=8, store=store)
    stored = store.run(RunId("micro", "1l32", 2)).read_checkpoint(8).tensors
    assert all(torch.equal(again.state_dict()[k], v) for k, v in stored.items())


def test_snapshot_is_reused_not_rewritten(store):
    first = zoo.snapshot(NAME, seed=1, step=8, store=store)
    weights = first / "model.safetensors"
    before = weights.stat()
    again = zoo.snapshot(NAME, seed=1, step=8, store=store)
    assert again == first
    after = weights.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    record = json.loads((first / "zoo_snapshot.json").read_text())
    assert record["step"] == 8 and record["run"] == "micro-1l32/seed-1"


def test_stale_snapshot_is_rebuilt(store):
    """A cached folder whose weights no longer match the store's checkpoint is never served."""
    folder = zoo.snapshot(NAME, seed=1, step=6, store=store)
    record_path = folder / "zoo_snapshot.json"
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**record, "source_id": "something else"}))
    rebuilt = zoo.snapshot(NAME, seed=1, step=6, store=store)
    assert json.loads((rebuilt / "zoo_snapshot.json").read_text())["source_id"] == record["source_id"]


def test_publishing_keeps_a_current_snapshot_and_replaces_a_stale_one(store, tmp_path):
    """Two processes may build the same step at once: the second must not delete the first's
    folder (it may be open); a folder of other weights is replaced whole."""
    from zoo.registry.snapshot_folder import write_snapshot

    folder = zoo.snapshot(NAME, seed=1, step=8, store=store)
    inode, record = folder.stat().st_ino, json.loads((folder / "zoo_snapshot.json").read_text())
    run = store.run(RunId("micro", "1l32", 1))
    tensors = run.read_checkpoint(8).tensors
    write_snapshot(folder, run=run, step=8, tensors=tensors, tokens_seen=record["tokens_seen"],
                   source=record["source"])
    assert folder.stat().st_ino == inode  # kept, not rebuilt under a reader
    other = {**record["source"], "weights_id": "other weights"}
    write_snapshot(folder, run=run, step=8, tensors=tensors, tokens_seen=record["tokens_seen"],
                   source=other)
    assert folder.stat().st_ino != inode
    assert json.loads((folder / "zoo_snapshot.json").read_text())["source"] == other
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # nothing left aside
    (folder / "zoo_snapshot.json").write_text("{damaged")  # no readable record: replaced
    write_snapshot(folder, run=run, step=8, tensors=tensors, tokens_seen=record["tokens_seen"],
                   source=other)
    assert json.loads((folder / "zoo_snapshot.json").read_text())["source"] == other
    zoo.snapshot(NAME, seed=1, step=8, store=store)  # the store's weights again, rebuilt


def test_snapshot_opens_with_transformers_alone(store, tmp_path):
    folder = zoo.snapshot(NAME, seed=1, step=12, store=store)
    code = (
        "import sys, torch\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"model = AutoModelForCausalLM.from_pretrained({str(folder)!r})\n"
        f"tokenizer = AutoTokenizer.from_pretrained({str(folder)!r})\n"
        "ids = tokenizer('import os', return_tensors='pt')['input_ids']\n"
        "logits = model(ids).logits\n"
        "assert 'zoo' not in sys.modules and 'training' not in sys.modules\n"
        "print(type(model).__name__, logits.shape[-1], tokenizer.vocab_size)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], check=False, cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["GPTNeoXForCausalLM", "512", "512"]
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["GPTNeoXForCausalLM"] and config["dtype"] == "float32"


def test_steps_sort_as_integers(store):
    assert zoo.steps(NAME, seed=1, store=store) == STORED


def test_list_models(store):
    [info] = zoo.list_models(store=store)
    assert (info.name, info.family, info.size, info.seeds) == (NAME, "micro", "1l32", (1, 2))
    assert info.steps == {1: tuple(STORED), 2: tuple(STORED)}


def test_unknown_name_lists_models(store):
    with pytest.raises(ZooError, match=r"no model 'nano-1l32'.*models: micro-1l32"):
        zoo.load("nano-1l32", seed=1, step=0, store=store)


def test_unknown_seed_lists_seeds(store):
    with pytest.raises(ZooError, match=r"no seed 7 for micro-1l32.*seeds: 1, 2"):
        zoo.steps(NAME, seed=7, store=store)


@pytest.mark.parametrize("name", ["../x", "../x-1l32", "micro-../1l32", "micro/../x-1l32"])
def test_path_traversal_in_a_name_is_refused(store, name):
    with pytest.raises(ZooError, match="invalid"):
        zoo.snapshot(name, seed=1, step=0, store=store)


@pytest.mark.parametrize("step", [300, 25, -1])
def test_step_beyond_the_run_says_the_range(store, step):
    expected = (f"no step {step} for micro-1l32 seed 1; stored: 0, 1, 2, 4, …, 24 (10 steps), "
                "keyframes every 8; any step 1..24 can be replayed")
    with pytest.raises(ZooError) as caught:
        zoo.load(NAME, seed=1, step=step, store=store)
    assert str(caught.value) == expected
    with pytest.raises(ZooError, match=f"no step {step} "):
        zoo.snapshot(NAME, seed=1, step=step, store=store)


def test_step_must_be_an_integer(store):
    with pytest.raises(ZooError, match="step must be an integer, got '8'"):
        zoo.load(NAME, seed=1, step="8", store=store)


@pytest.mark.parametrize("architecture,size", [
    ("llama", {"name": "1l32", "layers": 1, "width": 32, "heads": 2, "mlp_width": 64}),
    ("toy", {"name": "1l32", "layers": 1, "width": 32, "heads": 2, "mlp_width": 64,
             "activation": "solu"}),
])
def test_load_equals_a_plain_folder_load_for_each_architecture(tmp_path, monkeypatch,
                                                                    architecture, size):
    """Whatever the architecture, zoo.load equals transformers' own load of the snapshot folder."""
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    store = Store.open(str(tmp_path / "store"))
    manifest = write_manifest(tmp_path, architecture=architecture, sizes=[size], seeds=[1], steps=4,
                              checkpoints={"log_spaced_until": 4, "every": 4, "keyframe_every": 4})
    train_family(manifest, store=store, threads=2, progress=False)
    cold, _ = zoo.load("micro-1l32", seed=1, step=4, store=store)
    plain = AutoModelForCausalLM.from_pretrained(
        zoo.snapshot("micro-1l32", seed=1, step=4, store=store), attn_implementation="eager"
    ).eval()
    assert type(cold) is type(plain) and cold.config.to_dict() == plain.config.to_dict()
    cold_state, plain_state = cold.state_dict(), plain.state_dict()
    assert list(cold_state) == list(plain_state)
    assert all(torch.equal(cold_state[k], plain_state[k]) for k in cold_state)
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(cold.named_buffers(), plain.named_buffers()))
    with torch.no_grad():
        assert torch.equal(cold(_tokens()).logits, plain(_tokens()).logits)
    if architecture == "toy":  # a fresh process, the snapshot cached: zoo.snapshot registers it
        code = ("import zoo\nfrom transformers import AutoModelForCausalLM\n"
                f"path = zoo.snapshot('micro-1l32', seed=1, step=4, store={store.url!r})\n"
                "print(type(AutoModelForCausalLM.from_pretrained(path)).__name__)\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=300, env={**os.environ, "ZOO_CACHE": str(tmp_path / "cache")})
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.split() == ["ZooToyForCausalLM"]


def test_load_of_a_corrupt_blob_fails_clearly_and_caches_nothing(tmp_path, monkeypatch):
    """A bad blob is an error naming the file, with no snapshot or staging folder left behind."""
    from zoo_common.errors import IntegrityError

    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    store = Store.open(str(tmp_path / "store"))
    manifest = write_manifest(tmp_path, seeds=[1], steps=4,
                              checkpoints={"log_spaced_until": 4, "every": 4, "keyframe_every": 4})
    train_family(manifest, store=store, threads=2, progress=False)
    refs = store.run(RunId("micro", "1l32", 1)).checkpoint_manifest(4)["tensors"]
    sha = max(refs.values(), key=lambda r: r["nbytes"])["blob"]
    blob = store.location.local_path(store.blobs.relpath(sha))
    data = bytearray(blob.read_bytes())
    data[-10] ^= 0x01
    blob.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=sha):
        zoo.load(NAME, seed=1, step=4, store=store)
    assert not list((tmp_path / "cache").rglob("step-4*"))
    assert not list((tmp_path / "cache").rglob(".*partial"))
