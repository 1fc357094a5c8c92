"""What a feature is (zoo.dictionaries.feature_view) and the dictionary pages of `zoo serve`: a
feature's contexts are real rows of the run's batches, its steps are the data index's, its logit
effect is W_U W_dec[f], its lineage follows it to the other step, and the pages show all of it
in a real browser (headless Chromium), escaped."""
from __future__ import annotations

import shutil
import subprocess
from urllib.parse import quote

import numpy as np
import pytest
import torch
import yaml
from micro_family import write_manifest

import zoo
from training.sweep import train_family
from zoo.dictionaries.feature_view import (
    describe_feature,
    feature_lineage,
    find_dictionary,
    lineage_dictionaries,
    logit_effect,
    top_contexts,
)
from zoo.models.sites import Site, capturing
from zoo.registry.batches import open_run_data
from zoo.store.store import Store

NAME = "micro-1l32"
SITE = "blocks.0.hook_resid_post"
SMALL = {"width": 64, "k": 4, "steps": 50, "batch": 256}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SPARSE = {
    "family": "spfv", "architecture": "superposition",
    "sizes": [{"name": "n6m2s0.9", "width": 2,
               "source": "builtin:sparse_features?n=6&sparsity=0.9&importance=1"}],
    "seeds": [1], "data": {"source": "builtin:sparse_features?n=6&sparsity=0.9&importance=1"},
    "optimizer": {"lr": 1e-2, "betas": [0.9, 0.999], "weight_decay": 0.0, "clip": 0},
    "schedule": {"kind": "constant", "warmup_steps": 0}, "batch_size": 64, "steps": 32,
    "checkpoints": {"log_spaced_until": 4, "every": 16, "keyframe_every": 16},
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """micro (seed 1, 16 steps) with topk dictionaries at steps 8 and 16, a relu one at 16 and a
    relu one on held-out text at 8;
    spfv (a superposition model, 32 steps) with one on its hidden vector. The tests share its
    cache (snapshots, the held-out set), so each reads what the first built."""
    folder = tmp_path_factory.mktemp("dictionary_pages")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_CACHE", str(folder / "cache"))
        store = Store.open(str(folder / "store"))
        train_family(write_manifest(folder, seeds=[1], steps=16), store=store, threads=2,
                     progress=False)
        for step in (8, 16):
            zoo.train_dict(NAME, seed=1, step=step, site=SITE, store=store, **SMALL)
        zoo.train_dict(NAME, seed=1, step=16, site=SITE, kind="relu", store=store, **SMALL)
        zoo.train_dict(NAME, seed=1, step=8, site=SITE, kind="relu", data="heldout", store=store,
                       **SMALL)
        (folder / "spfv.yaml").write_text(yaml.safe_dump(SPARSE, sort_keys=False))
        train_family(str(folder / "spfv.yaml"), store=store, threads=1, progress=False)
        zoo.train_dict("spfv-n6m2s0.9", seed=1, step=32, site="hidden", width=6, k=1, steps=50,
                       batch=256, store=store)
        yield store


def _run(store, name=NAME):
    return zoo.open_run(name, seed=1, store=store)


def _topk(store, step: int):
    return zoo.load_dict(NAME, seed=1, step=step, site=SITE, kind="topk", store=store)


def _densest(d) -> int:
    return int(torch.argmax(d.density))


def test_contexts_are_real_rows_of_the_batches_with_their_steps_and_documents(store):
    run, d = _run(store), _topk(store, 16)
    feature = _densest(d)
    view = describe_feature(run, d.record["name"], feature)
    assert view.reproduced  # the activations gathered again give the stored density exactly
    assert view.fires_on == round(view.density * view.rows) > 0 and view.rows == 16 * 8 * 32
    assert 0 < len(view.contexts) <= 20
    assert [c.activation for c in view.contexts] == sorted((c.activation for c in view.contexts),
                                                          reverse=True)
    corpus, _ = open_run_data(NAME, seed=1, store=store)
    ids, starts = corpus._document_table()
    model, _ = zoo.load(NAME, seed=1, step=16, store=store)
    for c in view.contexts:
        assert 1 <= c.step <= 16  # the dictionary's window: steps 1..16
        batch_ids = zoo.batch_ids(NAME, seed=1, step=c.step, store=store).tolist()
        tokens = zoo.batch(NAME, seed=1, step=c.step, store=store)[batch_ids.index(c.sample)]
        assert torch.equal(tokens, torch.from_numpy(corpus.samples([c.sample])[0]))
        assert c.token == corpus.decode([int(tokens[c.position])])
        assert (c.before + c.token).endswith(corpus.decode(tokens[:c.position + 1].tolist()[-8:]))
        assert list(c.steps_of) == zoo.steps_of(NAME, seed=1, sample=c.sample, store=store)
        assert c.step in c.steps_of
        where = int(np.searchsorted(starts, c.sample * corpus.seq_len + c.position, side="right")) - 1
        assert c.document == ids[where].as_py()
        with capturing(model, Site(SITE, "gpt_neox.layers.0", "output", 32)) as seen, torch.no_grad():
            model(input_ids=tokens[None])
        value = d.encode(seen[0][0, c.position]).detach()[feature]
        assert float(value) == pytest.approx(c.activation, rel=1e-4, abs=1e-5)


def test_logit_effect_is_the_decoder_direction_through_the_unembedding(store):
    run, d = _run(store), _topk(store, 16)
    feature = _densest(d)
    effect = logit_effect(run, d, feature, n=5)
    model, tokenizer = zoo.load(NAME, seed=1, step=16, store=store)
    expected = model.get_output_embeddings().weight.double() @ d.W_dec[feature].double()
    assert effect.values.shape == (512,) and effect.space == "tokens"
    assert torch.allclose(effect.values.double(), expected.detach(), atol=1e-5)
    assert [i for i, _, _ in effect.top] == torch.argsort(expected, descending=True)[:5].tolist()
    assert [i for i, _, _ in effect.bottom] == torch.argsort(expected)[:5].tolist()
    assert effect.top[0][1] == tokenizer.decode([effect.top[0][0]])
    assert "LayerNorm" in logit_effect.__doc__


def test_a_feature_is_followed_to_the_other_step(store):
    run, d = _run(store), _topk(store, 16)
    chosen = lineage_dictionaries(run, d.record)
    assert [r["step"] for r in chosen] == [8, 16] and all(r["config"]["kind"] == "topk" for r in chosen)
    alive = [f for f in range(64) if d.density[f] > 0]
    lineages = [feature_lineage(run, d, f)[0] for f in alive]
    followed = [line for line in lineages if len(line.points) == 2]
    assert followed, "no feature of step 16 matches one at step 8"
    line = followed[0]
    assert line.born == 8 and line.gone is None and line.points[0].cosine is None
    assert line.points[1].cosine >= line.threshold and line.points[1].step == 16
    assert line.points[0].dictionary == _topk(store, 8).record["name"]
    sparse = zoo.load_dict("spfv-n6m2s0.9", seed=1, step=32, site="hidden", store=store)
    none, why = feature_lineage(_run(store, "spfv-n6m2s0.9"), sparse, 0)
    assert none is None and "no other dictionary" in why


def test_a_dictionary_of_held_out_text_shows_its_text_without_samples(store):
    from zoo.eval.heldout import build_heldout

    run = _run(store)
    d = zoo.load_dict(NAME, seed=1, step=8, site=SITE, kind="relu", store=store)
    view = describe_feature(run, d.record["name"], _densest(d))
    assert view.reproduced and view.contexts
    corpus, _ = open_run_data(NAME, seed=1, store=store)
    texts = {corpus.decode(row.tolist()) for row in build_heldout(corpus).tokens}
    for c in view.contexts:
        assert (c.sample, c.step, c.document, c.steps_of) == (-1, 0, None, None)
        assert any(c.before + c.token + c.after in text for text in texts)


def test_bad_features_and_unknown_dictionaries_name_what_exists(store):
    run, d = _run(store), _topk(store, 8)
    with pytest.raises(zoo.ArgumentError, match="feature 64 is out of range: .* has 64 features, 0..63"):
        top_contexts(run, d, 64)
    with pytest.raises(zoo.NotFoundError, match=f"no dictionary 'nope' .*stored: .*{d.record['name']}"):
        find_dictionary(run, "nope")


def test_the_superposition_model_shows_input_features_and_writes_to_outputs(store):
    name = "spfv-n6m2s0.9"
    run = _run(store, name)
    d = zoo.load_dict(name, seed=1, step=32, site="hidden", store=store)
    feature = _densest(d)
    view = describe_feature(run, d.record["name"], feature)
    assert view.reproduced and view.contexts and view.logit_effect.space == "output features"
    for c in view.contexts:
        assert c.steps_of is None and c.step == c.sample // 64 + 1  # each sample is seen once
        values = zoo.batch(name, seed=1, step=c.step, store=store)[c.sample - (c.step - 1) * 64]
        assert c.features == tuple((int(i), float(values[i])) for i in torch.nonzero(values).flatten())
    model, _ = zoo.load(name, seed=1, step=32, store=store)
    expected = model.W.double().T @ d.W_dec[feature].double()
    assert torch.allclose(view.logit_effect.values.double(), expected.detach(), atol=1e-6)


def _dom(url: str) -> str:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-dev-shm-usage", "--virtual-time-budget=5000", "--dump-dom",
                           url], check=True, capture_output=True, text=True, timeout=120).stdout


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")
def test_the_dictionary_pages_render_in_a_real_browser(store):
    pytest.importorskip("uvicorn", reason="zoo serve needs the serve extra")
    from served_store import Server

    d, before = _topk(store, 16), _topk(store, 8)
    feature = _densest(d)
    server = Server(store)
    try:
        model = _dom(server.url + f"model/{NAME}")
        assert f'href="/dictionaries/{NAME}/1"' in model and "dictionaries (4)" in model
        listing = _dom(server.url + f"dictionaries/{NAME}/1")
        assert listing.count('class="dictionary"') == 4 and "variance explained" in listing
        assert listing.count('class="counts"') == 2  # features over training: topk64, relu64
        page = _dom(server.url + f"dictionary/{NAME}/1/{d.record['name']}?feature={feature}")
        view = describe_feature(_run(store), d.record["name"], feature)
        assert 'id="contexts"' in page and page.count('class="context"') == len(view.contexts)
        assert page.count("<mark>") == len(view.contexts)
        first = view.contexts[0]
        assert f'href="/run/{NAME}/1/{first.step}?sample={first.sample}"' in page
        assert all(f'href="/run/{NAME}/1/{s}"' in page for s in first.steps_of[:12])
        assert 'id="logit-effect"' in page and 'id="lineage"' in page
        line = view.lineage
        if line is not None and len(line.points) == 2:  # a link to the same lineage at step 8
            assert f"/dictionary/{NAME}/1/{before.record['name']}?feature={line.points[0].feature}" in page
        assert page.count('class="histogram"') == 1 and 'id="feature-list"' in page
        sparse = zoo.load_dict("spfv-n6m2s0.9", seed=1, step=32, site="hidden", store=store)
        hidden = _dom(server.url + f"dictionary/spfv-n6m2s0.9/1/{sparse.record['name']}?feature=0")
        assert "nonzero input features" in hidden and "output feature" in hidden
        status, body = server.raw("GET", f"/dictionary/{NAME}/1/{d.record['name']}?feature=64")
        assert status == 400 and b"64 features, 0..63" in body
        script = quote("<script>alert(1)</script>", safe="")
        status, body = server.raw("GET", f"/dictionary/{NAME}/1/{script}")
        assert status == 404 and b"<script" not in body and b"&lt;script&gt;" in body
        assert server.raw("GET", f"/dictionaries/{NAME}/9")[0] == 404
    finally:
        server.stop()
