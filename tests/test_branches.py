"""Counterfactual branches: a null branch is its parent bit for bit, every intervention does what
it says and is recorded, every read takes branch=, bad input gets one clear message, a killed
branch resumes to the same bits, and a branch stores only the blobs it changed."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from micro_family import write_manifest

import zoo
from data_index import StepIndex
from training.branching import branch
from training.session import Controls
from training.sweep import train_family
from zoo.cli import main
from zoo.config.names import RunId
from zoo.store.gc import collect_garbage
from zoo.store.store import Store
from zoo.store.verify import verify_store

CHECKPOINTS = {"log_spaced_until": 4, "every": 6, "keyframe_every": 8}  # keyframes 0 8 16 24
PARENT = RunId("micro", "1l32", 1)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """micro, seeds 1 and 2, 24 steps; keyframes every 8 steps, so step 5 must be replayed to."""
    folder = tmp_path_factory.mktemp("branches")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_CACHE", str(folder / "cache"))
        store = Store.open(str(folder / "store"))
        train_family(write_manifest(folder, checkpoints=CHECKPOINTS), store=store, threads=2,
                     progress=False)
        yield store


@pytest.fixture(autouse=True)
def _cache(store, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(store.location.local_path().parent / "cache"))


def _weights(store, run_id, step):
    return store.run(run_id).read_checkpoint(step).tensors


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_null_branch_is_its_parent_bit_for_bit_at_every_step(store):
    outcome = branch("micro-1l32", seed=1, from_step=5, label="null", store=store, progress=False)
    assert (outcome.status, outcome.first_step, outcome.last_step) == ("trained", 5, 24)
    child = store.run(PARENT.with_branch("null"))
    assert child.checkpoint_steps() == [5, 6, 8, 12, 16, 18, 24]  # the parent's, from N on
    for step in child.checkpoint_steps()[1:]:
        assert _equal(_weights(store, child.run_id, step), _weights(store, PARENT, step)), step
    parent_step5, _ = zoo.load("micro-1l32", seed=1, step=5, store=store)  # replayed, not stored
    assert _equal(_weights(store, child.run_id, 5), parent_step5.state_dict())
    assert zoo.replay("micro-1l32", seed=1, step=18, store=store, branch="null").exact
    between, _ = zoo.load("micro-1l32", seed=1, step=7, store=store, branch="null")  # replayed
    assert _equal(between.state_dict(), zoo.load("micro-1l32", seed=1, step=7, store=store)[0].state_dict())
    record = child.read_json("run.json")["branch"]
    assert record["parent"] == "micro-1l32/seed-1" and record["interventions"] == []


def test_replay_of_a_branch_step_says_exact_on_the_command_line(store, capsys):
    if not store.run(PARENT.with_branch("null")).exists():
        branch("micro-1l32", seed=1, from_step=5, label="null", store=store, progress=False)
    code = main(["replay", "micro-1l32", "--seed", "1", "--step", "12", "--branch", "null",
                 "--store", store.url])
    assert code == 0 and capsys.readouterr().out.startswith("EXACT micro-1l32/seed-1@null step 12")


def test_dropped_samples_are_never_trained_on_and_slots_refill_from_the_order(store):
    later = np.concatenate([zoo.batch_ids("micro-1l32", seed=1, step=s, store=store) for s in (6, 9)])
    dropped = sorted(set(later.tolist()))[:6]
    branch("micro-1l32", seed=1, from_step=5, label="drop", store=store, progress=False,
           drop_samples=dropped)
    child = store.run(PARENT.with_branch("drop"))
    parent5, _ = zoo.load("micro-1l32", seed=1, step=5, store=store)
    assert _equal(_weights(store, child.run_id, 5), parent5.state_dict())  # the exact start
    assert not _equal(_weights(store, child.run_id, 24), _weights(store, PARENT, 24))
    seen = [zoo.batch_ids("micro-1l32", seed=1, step=s, store=store, branch="drop")
            for s in range(6, 25)]
    assert all(len(ids) == 8 for ids in seen)  # batches stay full
    assert not set(np.concatenate(seen).tolist()) & set(dropped)
    # every other sample keeps its order: the branch's stream is the parent's minus the dropped
    parent_stream = np.concatenate([zoo.batch_ids("micro-1l32", seed=1, step=s, store=store)
                                    for s in range(6, 25)])
    kept = [i for i in parent_stream.tolist() if i not in dropped]
    assert np.concatenate(seen).tolist()[:len(kept)] == kept
    StepIndex.open(child.index_location).verify()  # against the branch's own order function
    assert zoo.replay("micro-1l32", seed=1, step=24, store=store, branch="drop").exact
    # before the branch point a branch's history is its parent's
    assert np.array_equal(zoo.batch_ids("micro-1l32", seed=1, step=3, store=store, branch="drop"),
                          zoo.batch_ids("micro-1l32", seed=1, step=3, store=store))
    early = int(zoo.batch_ids("micro-1l32", seed=1, step=2, store=store)[0])
    assert [s for s in zoo.steps_of("micro-1l32", seed=1, sample=early, store=store, branch="drop")
            if s <= 5] == [s for s in zoo.steps_of("micro-1l32", seed=1, sample=early, store=store)
                           if s <= 5]
    assert zoo.steps_of("micro-1l32", seed=1, sample=dropped[0], store=store, branch="drop") == [
        s for s in zoo.steps_of("micro-1l32", seed=1, sample=dropped[0], store=store) if s <= 5]


def test_a_tampered_branch_index_fails_verification(store, tmp_path):
    if not store.run(PARENT.with_branch("drop")).exists():
        test_dropped_samples_are_never_trained_on_and_slots_refill_from_the_order(store)
    index = StepIndex.open(store.run(PARENT.with_branch("drop")).index_location)
    index._samples[3] = int(index.skipped_samples()[0])  # as if a dropped sample had been trained
    with pytest.raises(zoo.IntegrityError, match="differs from the data order"):
        index.verify()


def test_dropped_documents_take_all_their_samples_out(store):
    corpus = zoo.registry.batches.open_run_data("micro-1l32", seed=1, store=store)[0]
    sample = int(zoo.batch_ids("micro-1l32", seed=1, step=7, store=store)[0])
    documents = corpus.documents_of(sample)
    branch("micro-1l32", seed=1, from_step=4, until_step=12, label="nodocs", store=store,
           progress=False, drop_documents=documents)
    gone = set(corpus.samples_of_documents(documents).tolist())
    assert sample in gone
    for step in range(5, 13):
        ids = zoo.batch_ids("micro-1l32", seed=1, step=step, store=store, branch="nodocs")
        assert not gone & set(ids.tolist())
        assert not set(documents) & {d for i in ids for d in corpus.documents_of(int(i))}
    record = store.run(PARENT.with_branch("nodocs")).read_json("run.json")["branch"]
    assert record["interventions"] == [{"kind": "drop_documents", "documents": sorted(documents)}]
    assert record["dropped_samples"] == len(gone)


@pytest.mark.parametrize("label, options, changed", [
    ("slow", {"lr_scale": 0.25}, "lr"),
    ("nowd", {"settings": {"optimizer.weight_decay": 0.0}}, "weight_decay"),
])
def test_a_changed_hyperparameter_holds_from_the_branch_point(store, label, options, changed):
    branch("micro-1l32", seed=1, from_step=8, until_step=16, label=label, store=store,
           progress=False, **options)
    child = store.run(PARENT.with_branch(label))
    assert _equal(_weights(store, child.run_id, 8), _weights(store, PARENT, 8))
    assert not _equal(_weights(store, child.run_id, 16), _weights(store, PARENT, 16))
    parent_lr = zoo.metrics("micro", store=store).to_pandas().query("seed == 1 and step == 12").lr
    branch_lr = zoo.metrics("micro@" + label, store=store).to_pandas().query("seed == 1 and step == 12").lr
    if changed == "lr":
        assert branch_lr.item() == pytest.approx(0.25 * parent_lr.item())
        assert child.read_json("run.json")["config"]["optimizer"]["lr"] == pytest.approx(0.25 * 3e-3)
    else:
        assert branch_lr.item() == parent_lr.item()
        assert child.read_keyframe(16).optimizer["param_groups"][0]["weight_decay"] == 0.0
    assert zoo.replay("micro-1l32", seed=1, step=16, store=store, branch=label).exact


def test_reinit_draws_the_named_parameters_afresh_and_zeroes_their_moments(store):
    branch("micro-1l32", seed=1, from_step=8, until_step=16, label="reattn", store=store,
           progress=False, reinit=["gpt_neox.layers.0.attention.*"], reinit_seed=3)
    child = store.run(PARENT.with_branch("reattn"))
    start, parent = _weights(store, child.run_id, 8), _weights(store, PARENT, 8)
    touched = [k for k in start if not torch.equal(start[k], parent[k])]
    assert touched and all(k.startswith("gpt_neox.layers.0.attention.") for k in touched)
    record = child.read_json("run.json")["branch"]
    assert set(touched) <= set(record["reinitialised"])
    keyframe = child.read_keyframe(8)
    params = list(zoo.load("micro-1l32", seed=1, step=8, store=store)[0].named_parameters())
    # the optimizer numbers its parameters group by group: matrices (decayed) first, then the rest
    names = [n for n, p in params if p.dim() >= 2] + [n for n, p in params if p.dim() < 2]
    zeroed = [names[int(k)] for k, state in keyframe.optimizer["state"].items()
              if not state["exp_avg"].any() and not state["exp_avg_sq"].any()]
    assert sorted(zeroed) == sorted(record["reinitialised"])
    assert zoo.replay("micro-1l32", seed=1, step=16, store=store, branch="reattn").exact


def test_replace_data_trains_on_another_corpus_with_the_parents_tokenizer(store):
    branch("micro-1l32", seed=1, from_step=8, until_step=12, label="other", store=store,
           progress=False, replace_data="builtin:pydoc?max_docs=60")
    child = store.run(PARENT.with_branch("other"))
    record = child.read_json("run.json")
    assert record["corpus_fingerprint"] != store.run(PARENT).read_json("run.json")["corpus_fingerprint"]
    batch = zoo.batch("micro-1l32", seed=1, step=10, store=store, branch="other")
    assert batch.shape == (8, 32)
    assert zoo.replay("micro-1l32", seed=1, step=12, store=store, branch="other").exact


def test_a_stopped_branch_resumes_to_the_same_bits(store):
    branch("micro-1l32", seed=2, from_step=5, label="resumed", store=store,
           controls=Controls(progress=False, stop_after_step=13))
    child = store.run(RunId("micro", "1l32", 2, "resumed"))
    assert child.status()["last_step"] == 13 and not child.status()["finished"]  # keyframed there
    with pytest.raises(zoo.ZooError, match="exists already .*--resume"):
        branch("micro-1l32", seed=2, from_step=5, label="resumed", store=store, progress=False)
    with pytest.raises(zoo.ZooError, match="other interventions"):
        branch("micro-1l32", seed=2, from_step=5, label="resumed", store=store, progress=False,
               resume=True, lr_scale=2.0)
    outcome = branch("micro-1l32", seed=2, from_step=5, label="resumed", store=store,
                     progress=False, resume=True)
    assert (outcome.status, outcome.first_step) == ("resumed", 13)
    for step in (12, 16, 24):  # a null branch: resumed == uninterrupted == the parent
        assert _equal(_weights(store, child.run_id, step), _weights(store, RunId("micro", "1l32", 2), step))


def test_a_branch_of_a_branch_reads_through_both_parents(store):
    if not store.run(PARENT.with_branch("drop")).exists():
        test_dropped_samples_are_never_trained_on_and_slots_refill_from_the_order(store)
    branch("micro-1l32@drop", seed=1, from_step=12, until_step=18, label="drop2", store=store,
           progress=False, lr_scale=0.5)
    assert np.array_equal(zoo.batch_ids("micro-1l32", seed=1, step=9, store=store, branch="drop2"),
                          zoo.batch_ids("micro-1l32", seed=1, step=9, store=store, branch="drop"))
    assert np.array_equal(zoo.batch_ids("micro-1l32", seed=1, step=2, store=store, branch="drop2"),
                          zoo.batch_ids("micro-1l32", seed=1, step=2, store=store))
    model, _ = zoo.load("micro-1l32", seed=1, step=12, store=store, branch="drop2")
    assert _equal(model.state_dict(), _weights(store, PARENT.with_branch("drop"), 12))
    assert zoo.replay("micro-1l32", seed=1, step=18, store=store, branch="drop2").exact
    with pytest.raises(zoo.ZooError, match="starts at step 5; to branch at step 3, branch its parent"):
        branch("micro-1l32@drop", seed=1, from_step=3, label="early", store=store, progress=False)


def test_seed_all_then_compare_gives_a_paired_interval_and_a_plot(store, tmp_path, capsys):
    outcomes = branch("micro-1l32", seed="all", from_step=8, until_step=24, label="fam",
                      store=store, progress=False, lr_scale=0.3)
    assert [o.run_id.seed for o in outcomes] == [1, 2]
    plot = tmp_path / "branch.png"
    assert main(["compare", "micro-1l32", "micro-1l32", "--branch", "fam", "--metric",
                 "train_loss", "--resamples", "500", "--out", str(plot), "--store", store.url]) == 0
    out = capsys.readouterr().out
    assert "B = micro-1l32@fam (seeds 1, 2)" in out and "branch point: step 8" in out
    assert "Multi-Bootstrap at step 24 (paired;" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith(("9 ", "24 "))]
    assert rows and plot.stat().st_size > 10_000
    assert main(["ls", "--store", store.url]) == 0
    listing = capsys.readouterr().out
    assert re.search(r"^  @fam +1,2 ", listing, re.M) and "micro-1l32@fam: from micro-1l32/seed-1 at step 8" in listing
    info = {m.name: m for m in zoo.list_models(store=store)}["micro-1l32"]
    assert info.seeds == (1, 2) and info.branches["fam"] == (1, 2)


def test_a_null_branch_stores_no_new_blob_and_gc_keeps_a_branchs_blobs(store):
    before = set(store.blobs.list_all())
    branch("micro-1l32", seed=2, from_step=8, until_step=24, label="free", store=store,
           progress=False)  # the branch point is a keyframe of the parent: everything is shared
    assert set(store.blobs.list_all()) == before
    branch("micro-1l32", seed=2, from_step=16, until_step=24, label="costs", store=store,
           progress=False, lr_scale=0.5)
    added = set(store.blobs.list_all()) - before
    assert added  # the changed weights and optimizer state: its own blobs
    collect_garbage(store, grace_seconds=0)
    assert added <= set(store.blobs.list_all())
    report = verify_store(store, [RunId("micro", "1l32", 2, "costs"), RunId("micro", "1l32", 2, "free")])
    assert report.ok, report.problems


def test_training_data_is_the_exact_batches_as_a_dataloader(store):
    loader = zoo.training_data("micro-1l32", seed=1, step=3, n_steps=4, store=store)
    items = list(loader)
    assert len(items) == 4 and items[0]["input_ids"].shape == (8, 32)
    assert torch.equal(items[1]["input_ids"], zoo.batch("micro-1l32", seed=1, step=4, store=store))
    model, _ = zoo.load("micro-1l32", seed=1, step=2, store=store)
    with torch.no_grad():
        loss = model(**items[0]).loss.item()
    logged = zoo.metrics("micro", store=store).to_pandas().query("seed == 1 and step == 3").train_loss
    assert loss == pytest.approx(logged.item(), rel=1e-6)  # the step's own training loss
    with pytest.raises(zoo.ZooError, match="step 27 is not in the data index"):
        zoo.training_data("micro-1l32", seed=1, step=23, n_steps=5, store=store)
    rows = zoo.training_data("micro-1l32", seed=1, step=3, n_steps=4, store=store, format="datasets")
    assert len(rows) == 32 and rows["step"][8:16] == [4] * 8
    assert rows["sample"][8:16] == zoo.batch_ids("micro-1l32", seed=1, step=4, store=store).tolist()
    assert rows["input_ids"][8:16] == items[1]["input_ids"].tolist()
    if not store.run(PARENT.with_branch("drop")).exists():
        test_dropped_samples_are_never_trained_on_and_slots_refill_from_the_order(store)
    dropped = zoo.training_data("micro-1l32", seed=1, step=6, n_steps=3, store=store,
                                branch="drop", format="datasets")
    assert rows["sample"] and dropped["sample"][:8] == zoo.batch_ids(
        "micro-1l32", seed=1, step=6, store=store, branch="drop").tolist()


def _ids_file(tmp_path, lines) -> str:
    path = tmp_path / "ids.txt"
    path.write_text("".join(f"{line}\n" for line in lines))
    return str(path)


@pytest.mark.parametrize("extra, message", [
    (["--from-step", "99", "--label", "x"], "step 99 is beyond micro-1l32 seed 1: it was trained to step 24"),
    (["--from-step", "5", "--label", "x", "--until-step", "5"], "until_step 5 is not after from_step 5"),
    (["--from-step", "5", "--label", "x", "--until-step", "30"], "beyond the end of micro-1l32 seed 1's schedule"),
    (["--from-step", "5", "--label", "Bad Label"], "invalid branch label 'Bad Label'"),
    (["--from-step", "5", "--label", "x", "--drop-samples", "IDS:5\n99999"], "1 dropped sample id(s) are not in the corpus (e.g. 99999)"),
    (["--from-step", "5", "--label", "x", "--drop-samples", "IDS:"], "holds no ids: an intervention needs at least one"),
    (["--from-step", "5", "--label", "x", "--drop-samples", "IDS:12\nabc"], "'abc' is not a sample id"),
    (["--from-step", "5", "--label", "x", "--drop-documents", "IDS:no-such-doc"], "1 document id(s) are not in the corpus"),
    (["--from-step", "5", "--label", "x", "--set", "optimizer.betas=1"], "cannot set 'optimizer.betas'"),
    (["--from-step", "5", "--label", "x", "--set", "weight_decay"], "expected FIELD=NUMBER"),
    (["--from-step", "5", "--label", "x", "--reinit", "nothing.*"], "reinit nothing.* matches no parameter"),
    (["--from-step", "5", "--label", "x", "--lr-scale", "0"], "lr_scale must be a number > 0"),
    (["--from-step", "5", "--label", "x", "--replace-data", "builtin:pydoc", "--drop-samples", "IDS:1"], "drop samples, or replace the data, not both"),
    (["--from-step", "5", "--label", "x", "--mask-samples", "IDS:5\n99999"], "1 masked sample id(s) are not in the corpus (e.g. 99999)"),
    (["--from-step", "5", "--label", "x", "--mask-samples", "IDS:5", "--drop-samples", "IDS:6"], "does not combine with dropping"),
])
def test_bad_branch_input_gets_one_clear_message_and_leaves_nothing(store, tmp_path, capsys,
                                                                    extra, message):
    argv = ["branch", "micro-1l32", "--seed", "1", "--quiet", "--store", store.url]
    for item in extra:
        argv.append(_ids_file(tmp_path, item[4:].split("\n") if item[4:] else []) if item.startswith("IDS:") else item)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and message in err, err
    assert not store.run(PARENT.with_branch("x")).exists()


def test_unknown_branches_and_labels_are_named(store, capsys):
    assert main(["batch", "micro-1l32", "--seed", "1", "--step", "3", "--branch", "nope",
                 "--store", store.url]) == 2
    assert "no branch 'nope' of micro-1l32 seed 1" in capsys.readouterr().err
    with pytest.raises(zoo.ZooError, match="names branch 'a' but branch='b' was given"):
        zoo.load("micro-1l32@a", seed=1, step=3, store=store, branch="b")
    with pytest.raises(zoo.ZooError, match="drop_samples is given but empty"):
        branch("micro-1l32", seed=1, from_step=5, label="e", store=store, drop_samples=[])
    metrics = json.dumps(sorted(m.name for m in zoo.list_models(store=store)))
    assert "@" not in metrics  # branches are listed under their model, not as models


def test_a_null_branch_of_a_dropping_branch_reproduces_it_and_a_window_ends(store):
    if not store.run(PARENT.with_branch("drop")).exists():
        test_dropped_samples_are_never_trained_on_and_slots_refill_from_the_order(store)
    drop = PARENT.with_branch("drop")
    branch("micro-1l32@drop", seed=1, from_step=10, label="dropnull", store=store, progress=False)
    for step in (12, 16, 18, 24):  # its parent's order, dropped set included: the same bits
        assert _equal(_weights(store, PARENT.with_branch("dropnull"), step), _weights(store, drop, step))
    assert np.array_equal(zoo.batch_ids("micro-1l32", seed=1, step=20, store=store, branch="dropnull"),
                          zoo.batch_ids("micro-1l32", seed=1, step=20, store=store, branch="drop"))
    # a window: dropped in steps 6..10 only, then the order reads on from where it stood
    everything = np.concatenate([zoo.batch_ids("micro-1l32", seed=1, step=s, store=store) for s in range(1, 25)])
    dropped = sorted(set(everything[40:200].tolist()))[:40]
    branch("micro-1l32", seed=1, from_step=5, label="window", store=store, progress=False,
           drop_samples=dropped, drop_until=10)
    batches = [zoo.batch_ids("micro-1l32", seed=1, step=s, store=store, branch="window").tolist()
               for s in range(6, 25)]
    assert not set(sum(batches[:5], [])) & set(dropped)
    assert set(sum(batches[5:], [])) & set(dropped)  # after the window they come back
    index = StepIndex.open(store.run(PARENT.with_branch("window")).index_location)
    index.verify()
    order = index.branch_order()
    assert order.skip_until == 10 and order.start == 5 * 8
    after = order.position_after(10, data_seed=1, batch_size=8, n_samples=index.n_samples)
    plain = zoo.registry.batches.open_run_data("micro-1l32", seed=1, store=store)[1]
    from data_index.order import order_positions
    assert batches[5] == order_positions(np.arange(after, after + 8), data_seed=1,
                                         n_samples=index.n_samples, batch_size=8).tolist()
    assert plain.n_samples == index.n_samples
    record = store.run(PARENT.with_branch("window")).read_json("run.json")["branch"]
    assert record["interventions"][0]["until_step"] == 10
    with pytest.raises(zoo.ZooError, match="drop_until 30 is outside the branch's steps 6..24"):
        branch("micro-1l32", seed=1, from_step=5, label="w2", store=store, progress=False,
               drop_samples=dropped, drop_until=30)
