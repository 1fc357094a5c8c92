"""zoo.attribute: scores along the exact trajectory, stored and checked; the check by branches."""

import pytest
import torch

from micro_family import write_manifest
from zoo_common.errors import ArgumentError, BranchNotFoundError, ZooError

CHECKPOINTS = {"log_spaced_until": 4, "every": 6, "keyframe_every": 8}  # keyframes 0 8 16 24
NAME = "micro-1l32"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from training.sweep import train_family
    from zoo.store.store import Store

    folder = tmp_path_factory.mktemp("attribution")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_CACHE", str(folder / "cache"))
        store = Store.open(str(folder / "store"))
        train_family(write_manifest(folder, checkpoints=CHECKPOINTS, seeds=[1]), store=store,
                     threads=2, progress=False)
        yield store


@pytest.fixture(autouse=True)
def _cache(store, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(store.location.local_path().parent / "cache"))


def _attribute(store, **options):
    from zoo.attribution.attribution import attribute

    settings = dict(seed=1, target="heldout", from_step=9, until_step=12, store=store,
                    progress=False)
    return attribute(NAME, **{**settings, **options})


def test_a_steps_scores_sum_to_the_batch_gradient_along_the_target_gradient(store):
    """TracIn per sample sums, over a step's batch, to lr * clip factor * g_T . g_batch: the
    per-example gradients are the step's own (torch.func), at the weights the step started from."""
    import zoo
    from zoo.attribution.targets import build_target
    from zoo.store.catalog import open_run
    from zoo.store.corpora import open_corpus

    result = _attribute(store)
    run = open_run(NAME, seed=1, store=store)
    record = run.read_json("run.json")
    corpus = open_corpus(store, record["corpus_fingerprint"])
    target = build_target("heldout", corpus=corpus, context=32)
    step = 11
    model, _ = zoo.load(NAME, seed=1, step=step - 1, store=store)  # the weights step 11 starts from
    batch = torch.from_numpy(corpus.samples(zoo.batch_ids(NAME, seed=1, step=step, store=store))).long()
    model.train()
    loss = model(input_ids=batch, labels=batch).loss
    g_batch = torch.autograd.grad(loss, list(model.parameters()))
    model.zero_grad()
    g_target = torch.autograd.grad(target.loss(model), list(model.parameters()))
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in g_batch]))
    factor = min(1.0, record["config"]["optimizer"]["clip"] / (float(norm) + 1e-6))
    lr = zoo.metrics("micro", store=store).to_pylist()
    lr = next(r["lr"] for r in lr if r["seed"] == 1 and r["step"] == step)
    expected = lr * factor * sum(float((a.double() * b.double()).sum()) for a, b in zip(g_target, g_batch))
    rows = [r for r in result.table.to_pylist() if r["step"] == step and r["method"] == "tracin"]
    assert len(rows) == batch.shape[0] and [r["slot"] for r in rows] == list(range(batch.shape[0]))
    assert sum(r["score"] for r in rows) == pytest.approx(expected, rel=1e-4, abs=1e-9)


def test_scores_are_stored_read_back_and_recomputed_when_stale_or_damaged(store):
    first = _attribute(store)
    assert first.table.num_rows == 3 * 8 * 2  # 3 steps x batch 8 x 2 methods
    again = _attribute(store)
    assert again.table.equals(first.table) and again.seconds == first.seconds  # read, not rerun
    per_sample = first.per_sample("adam").to_pylist()
    assert [r["score"] for r in per_sample] == sorted((r["score"] for r in per_sample), reverse=True)
    path = first.path + ".parquet"
    data = bytearray(store.location.read_bytes(path))
    data[len(data) // 2] ^= 0xFF
    store.location.write_atomic(path, bytes(data))
    healed = _attribute(store)
    assert healed.table.equals(first.table)  # damaged: recomputed to the same scores
    other = _attribute(store, target="samples:0,1")
    assert other.path != first.path and not other.table.equals(first.table)


@pytest.mark.parametrize("options, words", [
    ({"from_step": 12, "until_step": 12}, "is empty"),
    ({"until_step": 99}, "was trained to step 24"),
    ({"target": ""}, "needs a target"),
    ({"target": "samples:"}, "names no sample"),
    ({"target": "samples:99999999"}, "outside the corpus"),
    ({"target": "nonsense"}, "unknown target 'nonsense'"),
])
def test_bad_input_is_one_clear_error(store, options, words):
    with pytest.raises(ArgumentError, match=words):
        _attribute(store, **options)


def test_an_unknown_branch_is_named(store):
    with pytest.raises(BranchNotFoundError):
        _attribute(store, branch="nosuch")


def test_the_removal_check_retrains_the_window_and_reuses_its_branches(store):
    from zoo.attribution.check import removal_check
    from zoo.store.catalog import open_run

    result = _attribute(store, from_step=8, until_step=12)
    removal = removal_check(result, k=4, store=store)
    assert set(removal.rise) == {"top", "random", "bottom"}
    assert all(abs(v) < 10 for v in removal.rise.values())
    branches = sorted(p.name for p in (store.location.local_path() / "runs" / "micro" / "1l32").iterdir())
    again = removal_check(result, k=4, store=store)
    assert again.rise == removal.rise  # the same branches, read again, not retrained
    assert sorted(p.name for p in (store.location.local_path() / "runs" / "micro" / "1l32").iterdir()) == branches
    top_label = next(b for b in branches if b.startswith("seed-1@mask-8-12-"))
    run = open_run(NAME, seed=1, store=store, branch=top_label.split("@")[1])
    assert run.read_json("run.json")["branch"]["from_step"] == 8
    with pytest.raises(ArgumentError, match="more than half"):
        removal_check(result, k=1000, store=store)


def test_a_masked_sample_trains_as_if_its_batch_lacked_it(store):
    """The check's counterfactual: a branch that masks samples keeps the parent's batches, and
    its step equals training the parent's state on the batch without those samples."""
    import zoo
    from zoo.engine.step_replay import advance
    from zoo.store.catalog import open_run
    from zoo.store.corpora import open_corpus

    ids = [int(i) for i in zoo.batch_ids(NAME, seed=1, step=9, store=store)]
    masked = [ids[0], ids[3]]
    zoo.branch(NAME, seed=1, from_step=8, until_step=9, label="masked-two", store=store,
               mask_samples=masked, drop_until=9, progress=False)
    branch_ids = zoo.batch_ids(NAME, seed=1, step=9, store=store, branch="masked-two")
    assert [int(i) for i in branch_ids] == ids  # the same batch: nothing moved up
    branch_model, _ = zoo.load(NAME, seed=1, step=9, store=store, branch="masked-two")
    parent = open_run(NAME, seed=1, store=store)
    corpus = open_corpus(store, parent.read_json("run.json")["corpus_fingerprint"])
    state = advance(parent, 8, store=store)  # the parent's exact state at the branch point
    kept = [i for i in ids if i not in masked]
    state.training.update(torch.from_numpy(corpus.samples(kept)).long(), loss_mask=None)
    expected = state.model.state_dict()
    parent_9, _ = zoo.load(NAME, seed=1, step=9, store=store)
    for name, tensor in branch_model.state_dict().items():
        assert torch.allclose(tensor, expected[name], atol=1e-6, rtol=0), name
    assert any(not torch.equal(t, parent_9.state_dict()[k]) for k, t in branch_model.state_dict().items())
    assert zoo.replay(NAME, seed=1, step=9, store=store, branch="masked-two").exact


def test_the_command_line_prints_the_top_samples_and_the_stored_path(store, capsys):
    from zoo.cli import main

    assert main(["attribute", NAME, "--seed", "1", "--target", "heldout", "--from-step", "9",
                 "--until-step", "12", "--top", "3", "--quiet", "--store", store.url]) == 0
    out = capsys.readouterr().out
    assert "highest 3:" in out and "lowest 3:" in out and "attributions/" in out
    assert main(["attribute", NAME, "--seed", "1", "--target", "heldout", "--from-step", "9",
                 "--until-step", "99", "--store", store.url]) == 2
    assert "was trained to step 24" in capsys.readouterr().err


def test_trak_from_dattri_scores_the_window_and_enters_the_checks(store):
    """The library's TRAK (dattri) scores exactly the window's samples, the same bits twice (its
    projection has a named seed), and the removal check takes its scores beside ours."""
    pytest.importorskip("dattri")
    from zoo.attribution.check import removal_check
    from zoo.attribution.library_scores import trak_scores

    result = _attribute(store, from_step=8, until_step=12)
    trak, seconds = trak_scores(result, store=store, checkpoints=2, proj_dim=64)
    window = {r["sample_id"] for r in result.per_sample("adam").to_pylist()}
    assert set(trak) == window and seconds > 0
    assert all(v == v and abs(v) < float("inf") for v in trak.values())
    assert len(set(trak.values())) > len(trak) // 2  # scores, not a constant
    again, _ = trak_scores(result, store=store, checkpoints=2, proj_dim=64)
    assert again == trak
    removal = removal_check(result, k=4, store=store, method="trak", scores=trak)
    assert set(removal.rise) == {"top", "random", "bottom"} and removal.method == "trak"
    with pytest.raises(ArgumentError, match="1 missing"):
        removal_check(result, k=4, store=store, scores=dict(list(trak.items())[1:]))


def test_the_attribution_pages_render_in_a_real_browser(store):
    """zoo serve shows a stored attribution as its top samples with text, document and the steps
    that trained them (linked); a damaged file is refused, a stale one says how to recompute."""
    import json
    import shutil
    import subprocess
    from urllib.parse import quote

    pytest.importorskip("uvicorn", reason="zoo serve needs the serve extra")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("headless Chromium is not installed")
    from served_store import Server

    def dom(url):
        return subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                               "--disable-dev-shm-usage", "--virtual-time-budget=5000",
                               "--dump-dom", url], check=True, capture_output=True, text=True,
                              timeout=120).stdout

    result = _attribute(store, from_step=8, until_step=12)
    key = result.path.rsplit("/", 1)[1]
    top = result.per_sample("adam").to_pylist()[0]
    server = Server(store)
    try:
        model = dom(server.url + f"model/{NAME}")
        assert f'href="/attributions/{NAME}/1"' in model
        listing = dom(server.url + f"attributions/{NAME}/1")
        assert f'href="/attribution/{NAME}/1/{quote(key)}"' in listing and "9..12" in listing
        page = dom(server.url + f"attribution/{NAME}/1/{quote(key)}?top=5")
        assert page.count("<tr>") == 2 * (5 + 1) and f"?sample={top['sample_id']}" in page
        assert all(f'href="/run/{NAME}/1/{s}"' in page for s in top["steps"])
        assert "AdamW-preconditioned" in page and "show tracin" in page
        status, body = server.raw("GET", f"/attribution/{NAME}/1/nosuch")
        assert status == 404 and key.encode() in body
        status, _ = server.raw("GET", f"/attribution/{NAME}/1/{quote(key)}?method=sgd")
        assert status == 400
        meta_path = result.path + ".json"
        meta = store.location.read_bytes(meta_path)
        stale = json.loads(meta)
        stale["source"]["run_record"] = "0" * 64  # as if the run had been retrained since
        store.location.write_atomic(meta_path, json.dumps(stale).encode())
        status, body = server.raw("GET", f"/attribution/{NAME}/1/{quote(key)}")
        assert b"recompute it: zoo attribute" in body and b"--from-step 8" in body
        assert b"stale" in server.raw("GET", f"/attributions/{NAME}/1")[1]
        store.location.write_atomic(meta_path, meta)
        parquet = result.path + ".parquet"
        data = store.location.read_bytes(parquet)
        store.location.write_atomic(parquet, data[:-8] + bytes(8))
        status, body = server.raw("GET", f"/attribution/{NAME}/1/{quote(key)}")
        assert status == 500 and b"sha256" in body
        store.location.write_atomic(parquet, data)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def task_store(tmp_path_factory):
    """The grokking family in miniature: full batch (every train pair at every step)."""
    from micro_family import write_grokking_manifest
    from training.sweep import train_family
    from zoo.store.store import Store

    folder = tmp_path_factory.mktemp("attribution_task")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_CACHE", str(folder / "cache"))
        store = Store.open(str(folder / "store"))
        train_family(write_grokking_manifest(folder, seeds=[1]), store=store, threads=2,
                     progress=False)
        yield store, folder


def test_a_full_batch_run_scores_its_training_pairs_on_its_test_pairs(task_store, monkeypatch):
    """Grokking trains on every train pair at every step: each pair is scored at each step of
    the window, the target is the answers of the test pairs, and the check drops pairs."""
    from zoo.attribution.attribution import attribute
    from zoo.attribution.check import removal_check

    store, folder = task_store
    monkeypatch.setenv("ZOO_CACHE", str(folder / "cache"))
    result = attribute("gmicro-1l32", seed=1, target="heldout", from_step=10, until_step=15,
                       store=store, progress=False)
    per_pair = result.per_sample("adam").to_pylist()
    assert len(per_pair) == 60 and all(sorted(r["steps"]) == [11, 12, 13, 14, 15] for r in per_pair)
    assert "test pairs" in result.target_words
    removal = removal_check(result, k=5, store=store)
    assert set(removal.rise) == {"top", "random", "bottom"}
    with pytest.raises(ArgumentError, match="not one for a task run"):
        attribute("gmicro-1l32", seed=1, target="repetition", from_step=10, until_step=15,
                  store=store, progress=False)
