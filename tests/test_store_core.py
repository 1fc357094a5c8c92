"""The store's core: bit-exact round trips, dedup, verified reads, names, formats, state trees."""

from __future__ import annotations

import json
import math

import pytest
import torch

from zoo_common.errors import IntegrityError, ZooError
from zoo.store import codec
from zoo.store import state_tree
from zoo.config.names import RunId, parse_model_name
from zoo.store.store import Store

RUN = RunId("tiny", "2l128", 1)


@pytest.fixture
def store(tmp_path):
    return Store.open(tmp_path / "store")


def every_dtype_tensors() -> dict[str, torch.Tensor]:
    """Large ones (> 4 KiB) go to blob files, small ones inline in the manifest: both kinds."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(64, 33, generator=g)
    special = torch.tensor([0.0, -0.0, math.inf, -math.inf, math.nan, 1e-45, 3.4e38])
    return {
        "fp32": base,
        "fp32_special": special,
        "bf16": base.bfloat16(),
        "bf16_small": base[:3].bfloat16(),
        "fp16": base.half(),
        "fp64": base.double(),
        "int64": torch.randint(-(2**62), 2**62, (6,), generator=g),
        "int64_large": torch.randint(-(2**62), 2**62, (600,), generator=g),
        "int32": torch.randint(-(2**31), 2**31 - 1, (3, 2), generator=g, dtype=torch.int32),
        "uint8": torch.get_rng_state(),
        "bool": base > 0,
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "noncontiguous": base.t(),
    }


def bits(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def test_every_dtype_round_trips_bit_exact(store):
    tensors = every_dtype_tensors()
    run = store.run(RUN)
    run.write_checkpoint(0, tensors, tokens_seen=0, config_hash="abc")
    back = run.read_checkpoint(0)
    assert (back.step, back.tokens_seen, back.config_hash) == (0, 0, "abc")
    assert list(back.tensors) == list(tensors)
    for name, original in tensors.items():
        loaded = back.tensors[name]
        assert loaded.dtype == original.dtype and loaded.shape == original.shape, name
        assert bits(loaded) == bits(original), name
    assert bits(run.read_tensor(0, "bf16")) == bits(tensors["bf16"])
    manifest = run.checkpoint_manifest(0)
    assert manifest["tensors"]["bf16"]["dtype"] == "bfloat16"
    assert manifest["tensors"]["fp32"]["encoding"] == "bytegroup-zstd"
    encodings = {name: ref["encoding"] for name, ref in manifest["tensors"].items()}
    assert {n for n, e in encodings.items() if e == "inline"} == {
        "fp32_special", "bf16_small", "int64", "int32", "bool", "scalar", "empty"}
    assert json.loads((store.location.local_path("zoo.json")).read_text()) == {"format": 2}


def test_codec_groups_bytes_and_beats_plain_zstd_on_floats():
    values = torch.randn(100_000, generator=torch.Generator().manual_seed(1)) * 0.02
    raw = bits(values)
    grouped = codec.encode(raw, itemsize=4)
    plain = codec.encode(raw, itemsize=4, encoding=codec.PLAIN_ZSTD)
    assert bytes(codec.decode(grouped)) == raw and bytes(codec.decode(plain)) == raw
    assert len(grouped) < 0.95 * len(plain)


def test_codec_round_trips_every_size_and_item_size():
    gen = torch.Generator().manual_seed(2)
    tensors = [torch.randn(n, generator=gen) for n in (50_000, 7, 50_000, 3_000, 1, 0)]
    tensors.append(torch.randn(4_000, generator=gen).to(torch.bfloat16))
    tensors.append(torch.randint(0, 255, (999,), generator=gen, dtype=torch.uint8))
    for tensor in tensors:
        raw = bits(tensor)
        assert bytes(codec.decode(codec.encode(raw, itemsize=tensor.element_size()))) == raw


@pytest.mark.parametrize("claimed", [41, 39, 10**15])
def test_codec_refuses_a_header_whose_size_disagrees_with_the_payload(claimed):
    """Memory is sized from the header, so a tampered size is caught before it is allocated."""
    blob = codec.encode(bits(torch.arange(10.0)), itemsize=4)
    header, payload = blob.split(b"\n", 1)
    tampered = header.replace(b'"nbytes":40', f'"nbytes":{claimed}'.encode()) + b"\n" + payload
    with pytest.raises(IntegrityError, match="header says|damaged blob header"):
        codec.decode(tampered)


def test_codec_refuses_a_size_that_is_no_whole_number_of_items():
    """One flipped bit in the header's item size: an IntegrityError, not a reshape traceback."""
    blob = codec.encode(bits(torch.arange(10.0)), itemsize=4)
    with pytest.raises(IntegrityError, match="damaged blob header"):
        codec.decode(blob.replace(b'"itemsize":4', b'"itemsize":6', 1))


def test_identical_tensors_are_stored_once_across_steps_and_runs(store):
    frozen = torch.randn(64, 64)
    for seed in (1, 2):
        run = store.run(RunId("tiny", "2l128", seed))
        for step in (0, 1, 2):
            run.write_checkpoint(
                step,
                {"frozen": frozen, "moving": torch.full((64, 32), float(step)),
                 "tiny": torch.full((3,), float(step))},  # inline: no blob file
                tokens_seen=step * 10,
                config_hash="h",
            )
    assert len(store.blobs.list_all()) == 1 + 3
    assert store.run(RUN).checkpoint_steps() == [0, 1, 2]


def test_steps_sort_as_integers_and_unknown_step_lists_them(store):
    run = store.run(RUN)
    for step in (1000, 2, 0, 4, 1, 16, 8, 32, 512, 64):
        run.write_checkpoint(step, {"w": torch.zeros(1)}, tokens_seen=step, config_hash="h")
    assert run.checkpoint_steps() == [0, 1, 2, 4, 8, 16, 32, 64, 512, 1000]
    with pytest.raises(ZooError, match=r"stored steps: 0, 1, 2, 4, …, 1000"):
        run.read_checkpoint(300)
    with pytest.raises(ZooError, match="no tensor 'v'.*it has: w"):
        run.read_tensor(0, "v")


def _blob_file(store, run, step, tensor):
    sha = run.checkpoint_manifest(step)["tensors"][tensor]["blob"]
    return store.location.local_path(store.blobs.relpath(sha))


@pytest.mark.parametrize("damage", ["flip_bit", "truncate", "delete"])
def test_damaged_blob_is_an_error_naming_run_step_tensor_and_file(store, damage):
    run = store.run(RUN)
    run.write_checkpoint(
        4,
        {"embed.weight": torch.randn(100, 16), "ok": torch.ones(2)},
        tokens_seen=4,
        config_hash="h",
    )
    path = _blob_file(store, run, 4, "embed.weight")
    data = bytearray(path.read_bytes())
    if damage == "flip_bit":
        data[-10] ^= 0x04
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:
        path.unlink()
    with pytest.raises(IntegrityError) as caught:
        run.read_checkpoint(4)
    message = str(caught.value)
    for part in ("tiny-2l128 seed 1", "step 4", "'embed.weight'", path.name):
        assert part in message
    assert torch.equal(run.read_tensor(4, "ok"), torch.ones(2))


@pytest.mark.parametrize("damage", ["flip_bit", "not_base64", "missing"])
def test_damaged_inline_tensor_is_an_error_naming_run_step_and_tensor(store, damage):
    import base64

    from zoo.store.verify import verify_store

    run = store.run(RUN)
    run.write_checkpoint(4, {"ln.bias": torch.randn(16), "big": torch.randn(64, 32)},
                         tokens_seen=4, config_hash="h")
    path = run.location.local_path(run.manifest_name("checkpoints", 4))
    manifest = json.loads(path.read_text())
    ref = manifest["tensors"]["ln.bias"]
    assert ref["encoding"] == "inline" and not store.blobs.has(ref["blob"])  # no file of its own
    if damage == "flip_bit":
        raw = bytearray(base64.b64decode(ref["data"]))
        raw[5] ^= 0x10
        ref["data"] = base64.b64encode(bytes(raw)).decode()
    elif damage == "not_base64":
        ref["data"] = "not base64!"
    else:
        del ref["data"]
    path.write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError) as caught:
        run.read_checkpoint(4)
    for part in ("tiny-2l128 seed 1", "step 4", "'ln.bias'", "inline tensor data"):
        assert part in str(caught.value)
    assert run.read_tensor(4, "big").shape == (64, 32)
    report = verify_store(store)
    assert [p.step for p in report.problems] == [4] and "'ln.bias'" in report.problems[0].message


def test_names_parse_on_last_dash_and_refuse_traversal(store):
    assert parse_model_name("my-fam-4l256") == ("my-fam", "4l256")
    run_id = RunId.from_name("tiny-2l128", 1)
    assert (run_id.model_name, run_id.key) == ("tiny-2l128", "tiny-2l128/seed-1")
    assert RunId.parse("tiny-2l128/seed-1") == run_id
    for bad in ("../x", "a/b-c", "tiny-..", "tiny-a/b", "Tiny-2l", "nodash", "tiny-"):
        with pytest.raises(ZooError):
            parse_model_name(bad)
    with pytest.raises(ZooError, match="invalid size"):
        RunId("tiny", "..", 1)
    with pytest.raises(ZooError, match="invalid seed"):
        RunId("tiny", "2l", -1)
    with pytest.raises(ZooError):
        store.run(run_id).write_json("../../escape.json", {})
    with pytest.raises(ZooError):
        store.corpus_location("../x")
    assert min([RunId("a", "b", 10), RunId("a", "b", 9)]).seed == 9


def test_newer_format_store_and_manifest_are_refused(tmp_path):
    root = tmp_path / "s"
    store = Store.open(root)
    run = store.run(RUN)
    run.write_checkpoint(0, {"w": torch.zeros(1)}, tokens_seen=0, config_hash="h")
    manifest_path = run.location.local_path(run.manifest_name("checkpoints", 0))
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "format": 1}))  # before inline tensors: read
    assert torch.equal(run.read_checkpoint(0).tensors["w"], torch.zeros(1))
    manifest_path.write_text(json.dumps({**manifest, "format": 3}))
    with pytest.raises(ZooError, match="newer Model Zoo.*upgrade"):
        store.run(RUN).read_checkpoint(0)  # a new handle: `run` read the manifest once already
    (root / "zoo.json").write_text('{"format": 99}')
    with pytest.raises(ZooError, match="upgrade"):
        Store.open(root)


def test_a_run_handle_reads_each_record_once_and_refresh_reads_again(tmp_path):
    """On s3:// or http:// every read is a round trip: a handle remembers what it read (its own
    writes excepted); refresh() or a new handle sees what others wrote since."""
    store = Store.open(tmp_path / "s")
    run = store.run(RUN)
    run.write_json("run.json", {"lr": 1})
    run.write_checkpoint(0, {"w": torch.zeros(1)}, tokens_seen=0, config_hash="h")
    assert run.read_json("run.json") == {"lr": 1} and run.checkpoint_steps() == [0]
    other = store.run(RUN)  # another writer
    other.write_json("run.json", {"lr": 2})
    other.write_checkpoint(5, {"w": torch.ones(1)}, tokens_seen=5, config_hash="h")
    assert run.read_json("run.json") == {"lr": 1} and run.checkpoint_steps() == [0]
    run.read_json("run.json")["lr"] = 99  # a copy: the handle's record is not changed
    run.refresh()
    assert run.read_json("run.json") == {"lr": 2} and run.checkpoint_steps() == [0, 5]
    run.write_json("run.json", {"lr": 3})  # its own writes: seen at once
    run.write_checkpoint(6, {"w": torch.ones(1)}, tokens_seen=6, config_hash="h")
    assert run.read_json("run.json") == {"lr": 3} and run.checkpoint_steps() == [0, 5, 6]


def test_json_records_round_trip_atomically(store):
    run = store.run(RUN)
    assert not run.exists()
    run.write_json("run.json", {"seed": 1, "lr": 1e-3})
    assert run.exists() and run.read_json("run.json") == {"seed": 1, "lr": 1e-3}
    with pytest.raises(ZooError, match="no status.json.*run.json"):
        run.read_json("status.json")
    assert store.runs() == [RUN]


def test_state_tree_round_trips_every_kind_of_leaf():
    tree = {
        "a": [1, 2.5, math.nan, math.inf, -math.inf, -0.0, None, True, "s"],
        3: (torch.ones(2), (1,)),
        "nested": {0: {"t": torch.arange(3)}},
        "big": 2**70,
    }
    stored: list[torch.Tensor] = []

    def put(path, tensor):
        stored.append(tensor)
        return {"i": len(stored) - 1}

    as_json = json.loads(json.dumps(state_tree.to_json(tree, put), allow_nan=False))
    back = state_tree.from_json(as_json, lambda path, ref: stored[ref["i"]])
    assert math.isnan(back["a"][2]) and back["a"][3:6] == [math.inf, -math.inf, -0.0]
    assert math.copysign(1, back["a"][5]) == -1 and isinstance(back["a"][1], float)
    assert (
        back[3][1] == (1,)
        and isinstance(back[3], tuple)
        and list(back) == ["a", 3, "nested", "big"]
    )
    assert torch.equal(back["nested"][0]["t"], torch.arange(3)) and back["big"] == 2**70
    assert len(state_tree.tensor_refs(as_json)) == 2
    with pytest.raises(ZooError, match="/x.*object"):
        state_tree.to_json({"x": object()}, put)


def _tiny_training(steps: int, model=None, opt=None):
    torch.manual_seed(0)
    model = model or torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4)
    )
    opt = opt or torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10))
    for _ in range(steps):
        loss = model(torch.randn(5, 8)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model, opt, sched


def test_keyframe_of_adamw_resumes_bit_exactly(store):
    model, opt, sched = _tiny_training(3)
    run = store.run(RUN)
    rng = {"torch_cpu": torch.get_rng_state()}
    run.write_keyframe(
        3,
        model=model.state_dict(),
        optimizer=opt.state_dict(),
        scheduler=sched.state_dict(),
        rng=rng,
        extra={"cursor": 15, "threads": 1},
        tokens_seen=15,
        config_hash="h",
    )
    frame = run.read_keyframe(3)
    assert frame.extra == {"cursor": 15, "threads": 1} and frame.step == 3
    fresh = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4))
    fresh.load_state_dict(frame.model)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    fresh_sched = torch.optim.lr_scheduler.LambdaLR(fresh_opt, lambda s: min(1.0, (s + 1) / 10))
    fresh_opt.load_state_dict(frame.optimizer)  # after building the scheduler: its init sets lr
    fresh_sched.load_state_dict(frame.scheduler)
    assert frame.optimizer["param_groups"][0]["betas"] == (0.9, 0.95)
    for m, o, s in ((model, opt, sched), (fresh, fresh_opt, fresh_sched)):
        torch.set_rng_state(frame.rng["torch_cpu"])
        for _ in range(2):
            loss = m(torch.randn(5, 8)).pow(2).mean()
            o.zero_grad()
            loss.backward()
            o.step()
            s.step()
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert bits(a) == bits(b)
    assert bits(opt.state_dict()["state"][0]["exp_avg_sq"]) == bits(
        fresh_opt.state_dict()["state"][0]["exp_avg_sq"]
    )


def test_delete_after_drops_later_steps(store):
    run = store.run(RUN)
    for step in (0, 1, 2, 4):
        run.write_checkpoint(
            step, {"w": torch.full((1,), float(step))}, tokens_seen=step, config_hash="h"
        )
    run.delete_after(1)
    assert run.checkpoint_steps() == [0, 1]


def test_bad_inputs_are_zoo_errors(store):
    run = store.run(RUN)
    with pytest.raises(ZooError, match="not a torch.Tensor"):
        run.write_checkpoint(0, {"w": [1.0]}, tokens_seen=0, config_hash="h")
    with pytest.raises(ZooError, match="step must be a non-negative integer"):
        run.write_checkpoint(-1, {}, tokens_seen=0, config_hash="h")
    with pytest.raises(ZooError, match="step must be an integer"):
        run.read_checkpoint("5")
    assert run.checkpoint_steps() == []


