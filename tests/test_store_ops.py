"""verify, gc, push/pull between local stores, the CLI, and the no-pickle guarantee."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import torch

from zoo_common.errors import ZooError
from zoo.cli.store import register
from zoo.store.gc import collect_garbage
from zoo.config.names import RunId
from zoo.store.store import Store
from zoo.store.transfer import copy_runs
from zoo.store.verify import verify_store

RUN = RunId("tiny", "2l128", 1)
ROOT = Path(__file__).resolve().parents[1]


def fill(store: Store, run_id: RunId = RUN, steps=(0, 1, 2, 4)) -> None:
    run = store.run(run_id)
    run.write_json("run.json", {"seed": run_id.seed})
    run.metrics_location.write_atomic("metrics.parquet", b"PAR1 not really")
    for step in steps:
        g = torch.Generator().manual_seed(step)
        # embed (8 KiB) is a blob file; ln and the optimizer's small tensors are inline
        tensors = {"embed": torch.randn(32, 64, generator=g), "ln": torch.ones(8)}
        run.write_checkpoint(step, tensors, tokens_seen=step * 64, config_hash="cfg")
    opt = {
        "state": {0: {"step": torch.tensor(4.0), "exp_avg": torch.randn(8)}},
        "param_groups": [{"lr": 1e-3}],
    }
    run.write_keyframe(
        steps[-1],
        model=tensors,
        optimizer=opt,
        scheduler={"last_epoch": 4},
        rng={"cpu": torch.get_rng_state()},
        extra={"cursor": 4},
        tokens_seen=steps[-1] * 64,
        config_hash="cfg",
    )


def test_verify_is_clean_then_flags_planted_duplicates_order_and_missing_blobs(tmp_path):
    store = Store.open(tmp_path)
    fill(store)
    assert verify_store(store).ok
    run = store.run(RUN)
    # plant: step 8 serves the same weights as step 4 (Pythia), step 16 has fewer tokens than step 8
    run.write_checkpoint(8, run.read_checkpoint(4).tensors, tokens_seen=8 * 64, config_hash="cfg")
    run.write_checkpoint(
        16, {"embed": torch.zeros(32, 64), "ln": torch.ones(8)}, tokens_seen=5, config_hash="cfg"
    )
    sha = run.checkpoint_manifest(2)["tensors"]["embed"]["blob"]
    store.location.remove(store.blobs.relpath(sha))
    problems = [str(p) for p in verify_store(store).problems]
    assert any("step 8" in p and "byte-identical weights to step 4" in p for p in problems), (
        problems
    )
    assert any("step 16" in p and "out of order" in p for p in problems), problems
    assert any("step 2" in p and "'embed'" in p and "missing" in p for p in problems), problems
    assert len(problems) == 3


def test_gc_removes_only_unreferenced_old_blobs(tmp_path):
    store = Store.open(tmp_path)
    fill(store)
    run = store.run(RUN)
    referenced = set(store.blobs.list_all())
    run.write_checkpoint(99, {"orphan": torch.randn(2000)}, tokens_seen=10**6, config_hash="cfg")
    run.delete_after(4)
    assert len(store.blobs.list_all()) == len(referenced) + 1
    young = collect_garbage(store)  # default grace: the orphan is fresh, a writer may still need it
    assert young.removed == [] and young.kept_young == 1
    dry = collect_garbage(store, grace_seconds=0, dry_run=True)
    assert len(dry.removed) == 1 and len(store.blobs.list_all()) == len(referenced) + 1
    done = collect_garbage(store, grace_seconds=0)
    assert done.removed == dry.removed and set(store.blobs.list_all()) == referenced
    assert verify_store(store).ok and run.read_keyframe(4).extra == {"cursor": 4}


def test_push_copies_only_missing_blobs_and_resumes_after_interruption(tmp_path):
    source, destination = Store.open(tmp_path / "a"), Store.open(tmp_path / "b")
    fill(source)
    fill(source, RunId("tiny", "2l128", 2), steps=(0, 1))
    source.corpus_location("fp123").write_atomic("corpus.json", b'{"fingerprint": "fp123"}')
    # an interrupted earlier push: some blobs arrived, no manifest did (manifests go last)
    for sha in sorted(set(_refs(source, RUN)))[:3]:
        destination.blobs.write_encoded(sha, source.blobs.read_encoded(sha))
    assert destination.runs() == []
    report = copy_runs(source, destination, [RUN])
    assert report.blobs_present == 3 and report.manifests_copied == 5
    assert report.blobs_copied == len(set(_refs(source, RUN))) - 3
    assert destination.run(RUN).read_json("run.json") == {"seed": 1}
    assert destination.run(RUN).metrics_location.read_bytes("metrics.parquet") == b"PAR1 not really"
    assert destination.corpus_location("fp123").exists("corpus.json")
    again = copy_runs(source, destination)
    assert again.blobs_copied == len(
        set(_refs(source, RunId("tiny", "2l128", 2))) - set(_refs(source, RUN))
    )
    assert copy_runs(source, destination).blobs_copied == 0
    assert destination.runs() == source.runs() and verify_store(destination).ok
    for step in source.run(RUN).checkpoint_steps():
        a, b = source.run(RUN).read_checkpoint(step), destination.run(RUN).read_checkpoint(step)
        assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)


def test_push_refuses_the_same_store_and_a_store_inside_the_other(tmp_path):
    source = Store.open(tmp_path / "a")
    fill(source)
    for destination, words in ((tmp_path / "a", "same store"),
                               (tmp_path / "a" / "corpora" / "copy", "lies inside"),
                               (tmp_path, "lies inside")):
        with pytest.raises(ZooError, match=words):
            copy_runs(source, Store.open(destination))
        with pytest.raises(ZooError, match=words):  # pull: the same check, roles swapped
            copy_runs(Store.open(destination), source)
    assert not (tmp_path / "a" / "corpora" / "copy" / "runs").exists()
    assert verify_store(source).ok


def test_push_refuses_corrupt_source_blob_and_conflicting_manifest(tmp_path):
    source, destination = Store.open(tmp_path / "a"), Store.open(tmp_path / "b")
    fill(source)
    sha = source.run(RUN).checkpoint_manifest(1)["tensors"]["embed"]["blob"]
    path = source.location.local_path(source.blobs.relpath(sha))
    data = bytearray(path.read_bytes())
    data[-5] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ZooError, match=f"incoming blob {sha}.*corrupt"):
        copy_runs(source, destination)
    assert destination.run(RUN).checkpoint_steps() == [] and not destination.blobs.has(sha)
    clean = Store.open(tmp_path / "c")
    fill(clean)
    fill(destination, steps=(0, 1, 2, 4))
    destination.run(RUN).write_checkpoint(
        2, {"x": torch.zeros(1)}, tokens_seen=1, config_hash="other"
    )
    with pytest.raises(ZooError, match=r"already has a different \(or damaged\) checkpoints/step-00000002.json"):
        copy_runs(clean, destination)


def _refs(store: Store, run_id: RunId) -> list[str]:
    from zoo.store.verify import manifest_refs

    run = store.run(run_id)
    manifests = [run.checkpoint_manifest(s) for s in run.checkpoint_steps()]
    manifests += [run.keyframe_manifest(s) for s in run.keyframe_steps()]
    return [ref["blob"] for m in manifests for ref in manifest_refs(m).values()
            if ref["encoding"] != "inline"]  # blob files only


def run_cli(*argv: str) -> tuple[int, str]:
    import argparse
    import contextlib
    import io

    parser = argparse.ArgumentParser(prog="zoo")
    register(parser.add_subparsers(dest="command", required=True))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        args = parser.parse_args(list(argv))
        try:
            code = args.handler(args)
        except ZooError as exc:
            return 2, str(exc)
    return code, out.getvalue()


def test_cli_ls_show_verify_gc_push_pull(tmp_path, capsys):
    store = tmp_path / "s"
    fill(Store.open(store))
    code, out = run_cli("ls", "--store", str(store))
    assert code == 0 and re.search(r"tiny-2l128\s+1\s+4\s+0\.\.4\s+1", out), out
    code, out = run_cli("show", "tiny-2l128", "--store", str(store))
    assert code == 0 and "checkpoints (4): 0, 1, 2, 4" in out and "keyframes   (1): 4" in out
    code, out = run_cli("show", "tiny-9l9", "--store", str(store))
    assert code == 2 and "models: tiny-2l128" in out
    code, out = run_cli("show", "tiny-2l128", "--seed", "7", "--store", str(store))
    assert code == 2 and "seeds: 1" in out
    code, out = run_cli("show", "../etc", "--store", str(store))
    assert code == 2 and "invalid" in out
    assert run_cli("verify", "--store", str(store))[0] == 0
    assert (
        run_cli("push", str(tmp_path / "copy"), "tiny-2l128", "--seed", "1", "--store", str(store))[
            0
        ]
        == 0
    )
    assert run_cli("pull", str(store), "--store", str(tmp_path / "pulled"))[0] == 0
    assert Store.open(tmp_path / "pulled").runs() == [RUN]
    run = Store.open(store).run(RUN)
    run.write_checkpoint(8, run.read_checkpoint(4).tensors, tokens_seen=8 * 64, config_hash="cfg")
    code, out = run_cli("verify", "tiny-2l128", "--store", str(store))
    assert code == 1 and "byte-identical weights to step 4" in out
    code, out = run_cli("gc", "--dry-run", "--grace-hours", "0", "--store", str(store))
    assert code == 0 and "would remove 0" in out


def test_no_load_path_unpickles(tmp_path, monkeypatch):
    """Reading every kind of stored object must not touch pickle or torch.load."""
    store = Store.open(tmp_path)
    fill(store)

    def refuse(*args, **kwargs):
        raise AssertionError("pickle / torch.load called on a load path")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    run = Store.open(tmp_path).run(RUN)
    run.read_checkpoint(4)
    run.read_keyframe(4)
    assert verify_store(store).ok
    for path in [*(ROOT / "zoo").rglob("*.py"), *(ROOT / "data_index").rglob("*.py")]:
        text = path.read_text()
        assert not re.search(
            r"^\s*(import pickle|from pickle|import dill|import cloudpickle)", text, re.MULTILINE
        ), path
        for call in re.findall(r"torch\.load\((.*)", text):
            assert "weights_only=True" in call, f"{path}: torch.load without weights_only=True"


def test_a_pull_touches_the_blobs_the_destination_already_has(tmp_path):
    """gc spares blobs younger than its grace period; blobs a pull finds already present are
    referenced again once its manifests land, so they must look young to a gc running meanwhile."""
    import os
    import time

    source, destination = Store.open(tmp_path / "a"), Store.open(tmp_path / "b")
    fill(source)
    shas = sorted(set(_refs(source, RUN)))
    for sha in shas:
        destination.blobs.write_encoded(sha, source.blobs.read_encoded(sha))
        os.utime(destination.location.local_path(destination.blobs.relpath(sha)),
                 (time.time() - 3 * 3600,) * 2)
    assert copy_runs(source, destination, [RUN]).blobs_present == len(shas)
    ages = [time.time() - destination.location.local_path(destination.blobs.relpath(sha)).stat().st_mtime
            for sha in shas]
    assert max(ages) < 600


def test_pushing_an_older_copy_never_rolls_the_destinations_records_back(tmp_path):
    source, destination = Store.open(tmp_path / "a"), Store.open(tmp_path / "b")
    fill(source, steps=(0, 1, 2))
    source.run(RUN).write_json("status.json", {"last_step": 2, "finished": False})
    fill(destination, steps=(0, 1, 2, 4))
    destination.run(RUN).write_json("status.json", {"last_step": 4, "finished": True})
    destination.run(RUN).metrics_location.write_atomic("metrics.parquet", b"PAR1 the longer run")
    copy_runs(source, destination, [RUN], include_corpora=False)
    run = destination.run(RUN)
    assert run.read_json("status.json") == {"last_step": 4, "finished": True}
    assert run.metrics_location.read_bytes("metrics.parquet") == b"PAR1 the longer run"
    assert run.checkpoint_steps() == [0, 1, 2, 4] and verify_store(destination).ok
    # the other way round the records are refreshed, as a resumed pull needs
    copy_runs(destination, source, [RUN], include_corpora=False)
    assert source.run(RUN).read_json("status.json") == {"last_step": 4, "finished": True}
    # a different run under the same name is a conflict, before anything is written
    other = Store.open(tmp_path / "c")
    fill(other, steps=(0, 1))  # the same checkpoints as the destination: no manifest conflict
    other.run(RUN).write_json("run.json", {"seed": 1, "config_hash": "another"})
    with pytest.raises(ZooError, match="different run under this name"):
        copy_runs(other, destination, [RUN], include_corpora=False)
    assert destination.run(RUN).read_json("run.json") == {"seed": 1}


@pytest.mark.parametrize("damage", ["no nbytes", "tensors a list", "reference a string"])
def test_malformed_manifests_are_reported_by_verify_and_stop_gc_and_push(tmp_path, damage):
    import json

    store = Store.open(tmp_path / "a")
    fill(store)
    path = store.run(RUN).location.local_path(store.run(RUN).manifest_name("checkpoints", 2))
    manifest = json.loads(path.read_text())
    if damage == "no nbytes":
        del manifest["tensors"]["embed"]["nbytes"]
    elif damage == "tensors a list":
        manifest["tensors"] = list(manifest["tensors"].values())
    else:
        manifest["tensors"]["embed"] = "deadbeef"
    path.write_text(json.dumps(manifest))
    problems = [str(p) for p in verify_store(store).problems]
    assert len(problems) == 1 and "step 2" in problems[0] and "damaged" in problems[0], problems
    with pytest.raises(ZooError, match="gc stopped, nothing removed: .*step 2"):
        collect_garbage(store, grace_seconds=0)
    with pytest.raises(ZooError, match="damaged.*nothing was copied"):
        copy_runs(store, Store.open(tmp_path / "b"), [RUN])


def test_store_ops_name_the_right_file_and_ignore_strays(tmp_path):
    source, destination = Store.open(tmp_path / "a"), Store.open(tmp_path / "b")
    fill(source)
    stray = source.location.local_path("blobs/zz") / ("Z" * 64)  # not a blob id
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"x")
    assert collect_garbage(source, grace_seconds=0).removed == [] and stray.exists()
    # a damaged destination manifest is a conflict, not a JSON traceback
    copy_runs(source, destination, [RUN])
    damaged = destination.run(RUN).location.local_path(destination.run(RUN).manifest_name("checkpoints", 1))
    damaged.write_text(damaged.read_text()[:20])
    with pytest.raises(ZooError, match="different \\(or damaged\\) checkpoints/step-00000001"):
        copy_runs(source, destination, [RUN])
    # a corrupt blob on its way in is named by where it came from
    fresh = Store.open(tmp_path / "c")
    sha = source.run(RUN).checkpoint_manifest(1)["tensors"]["embed"]["blob"]
    path = source.location.local_path(source.blobs.relpath(sha))
    data = bytearray(path.read_bytes())
    data[-5] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ZooError) as caught:
        copy_runs(source, fresh, [RUN])
    assert str(source.location.local_path(source.blobs.relpath(sha))) in str(caught.value)


def test_gc_removes_old_temporary_files_in_run_folders_and_reports_missing_blobs(tmp_path):
    import os
    import time

    store = Store.open(tmp_path)
    fill(store)
    folder = store.run(RUN).location.local_path("checkpoints")
    old, young = folder / ".tmp-123-old", folder / ".tmp-456-young"
    old.write_bytes(b"half a manifest")
    young.write_bytes(b"a writer at work")
    os.utime(old, (time.time() - 3 * 3600,) * 2)
    report = collect_garbage(store)
    assert report.removed_temporary == 1 and not old.exists() and young.exists()
    assert verify_store(store).ok and report.missing == 0
    sha = store.run(RUN).checkpoint_manifest(1)["tensors"]["embed"]["blob"]
    store.location.remove(store.blobs.relpath(sha))
    assert collect_garbage(store).missing == 1  # reported, so that nobody reads "kept N" as healthy


def test_verify_flags_a_status_beyond_every_stored_manifest(tmp_path):
    """An interrupted pull copies the run's records first and its manifests last: until it is run
    again, the run claims steps it does not hold, and verify must not call that healthy."""
    store = Store.open(tmp_path)
    fill(store)
    store.run(RUN).write_json("status.json", {"last_step": 4, "finished": True})
    assert verify_store(store).ok
    store.run(RUN).write_json("status.json", {"last_step": 8, "finished": True})
    problems = [str(p) for p in verify_store(store).problems]
    assert problems == [("tiny-2l128 seed 1: status.json says training reached step 8 but the "
                         "latest stored is step 4 (an interrupted push/pull? run it again)")]
