"""Evaluation sweeps: held-out data is unseen, re-runs skip finished work, results equal a plain
from_pretrained evaluation, tables have one row per (size, seed, step), bad inputs get their error."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from micro_family import write_manifest

import zoo
from zoo_common.errors import ZooError
from training.sweep import train_family
from zoo.cli import evaluation as cli_eval
from zoo.store.corpora import open_corpus
from zoo.eval.metrics import heldout_loss
from zoo.eval.evaluate import evaluate_family
from zoo.eval.heldout import build_heldout, heldout_documents
from zoo.config.names import RunId
from zoo.store.store import Store
from zoo.eval.tables import metrics_table

STEPS = [0, 1, 2, 4, 8, 12]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluate")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_CACHE", str(folder / "cache"))
        store = Store.open(str(folder / "store"))
        checkpoints = {"log_spaced_until": 4, "every": 4, "keyframe_every": 4}
        train_family(
            write_manifest(folder, steps=12, checkpoints=checkpoints),
            store=store,
            threads=2,
            progress=False,
        )
        yield store


def _corpus(store):
    record = store.run(RunId("micro", "1l32", 1)).read_json("run.json")
    return open_corpus(store, record["corpus_fingerprint"])


def test_heldout_documents_are_never_training_documents(store):
    corpus = _corpus(store)
    heldout = build_heldout(corpus, n_samples=16)
    training_ids = set(
        pq.read_table(corpus.folder / "documents.parquet").column("document_id").to_pylist()
    )
    assert heldout.document_ids and not training_ids & set(heldout.document_ids)
    # no held-out sample equals any training sample (a superset of what the index says was seen)
    seen = {corpus.samples([i])[0].tobytes() for i in range(corpus.n_samples)}
    assert not seen & {row.tobytes() for row in heldout.tokens}
    assert heldout.tokens.shape == (16, corpus.seq_len)


def test_heldout_for_every_docstring_uses_the_short_ones_training_dropped():
    _, rule, documents = heldout_documents("builtin:pydoc?max_docs=0&min_chars=200")
    first = [text for _, (_, text) in zip(range(20), documents)]
    assert all(100 <= len(text) < 200 for text in first) and "100..199" in rule


def test_a_source_with_no_honest_heldout_split_asks_for_one():
    with pytest.raises(ZooError, match="heldout='SOURCE'"):
        heldout_documents("data/notes.txt")
    with pytest.raises(ZooError, match="--metric accuracy"):
        heldout_documents("builtin:modular?p=7&train_fraction=0.3")


def test_rerun_skips_finished_work_and_new_metrics_run_alone(store):
    calls = []

    def weight_norm(model, tokenizer):
        calls.append(tokenizer.eos_token)
        return float(sum(p.double().norm() ** 2 for p in model.parameters()) ** 0.5)

    first = evaluate_family("micro", ["loss", weight_norm], store=store, progress=False)
    assert len(calls) == first.evaluated == 2 * len(STEPS) and first.skipped == 0
    again = evaluate_family("micro", ["loss", weight_norm], store=store, progress=False)
    assert len(calls) == 2 * len(STEPS) and again.evaluated == 0 and again.skipped == 2 * len(STEPS)
    more = evaluate_family("micro", ["induction", weight_norm], store=store, progress=False)
    assert len(calls) == 2 * len(STEPS) and more.evaluated == 2 * len(STEPS)
    assert not more.nan_results


def test_sweep_results_equal_a_plain_from_pretrained_evaluation(store):
    evaluate_family("micro", ["loss"], store=store, progress=False)
    heldout = torch.from_numpy(build_heldout(_corpus(store)).tokens)
    table = metrics_table("micro", store=store).to_pandas()
    for seed, step in [(1, 0), (2, 8), (1, 12)]:
        model, _ = zoo.load("micro-1l32", seed=seed, step=step, store=store)
        stored = table[(table.seed == seed) & (table.step == step)].loss.item()
        assert stored == pytest.approx(heldout_loss(model, heldout), abs=1e-6)


def test_metrics_table_has_one_row_per_size_seed_step(store):
    evaluate_family("micro", ["loss", "induction"], store=store, progress=False)
    table = metrics_table("micro", store=store)
    assert table.num_rows == 2 * 13  # steps 0..12 for two seeds
    names = table.column_names
    assert names[:5] == ["family", "size", "seed", "step", "train_loss"]
    assert {"loss", "induction.max", "induction.L0H0", "induction.L0H1"} <= set(names)
    rows = table.to_pylist()
    assert [(r["seed"], r["step"]) for r in rows] == [(s, t) for s in (1, 2) for t in range(13)]
    for row in rows:
        assert (row["loss"] is not None) == (row["step"] in STEPS)
        assert (row["train_loss"] is None) == (row["step"] == 0)
    frame = table.to_pandas()
    assert frame.groupby("seed").loss.count().tolist() == [len(STEPS)] * 2


def test_nan_results_are_recorded_and_counted(store):
    def diverged(model, tokenizer):
        return {"ok": 1.0, "bad": float("nan")}

    report = evaluate_family(
        "micro", [diverged], store=store, sizes=["1l32"], seeds=[1], progress=False
    )
    assert len(report.nan_results) == len(STEPS)
    assert all(r[3:] == ("diverged", "bad") for r in report.nan_results)
    assert f"{len(STEPS)} result(s) are NaN" in report.summary()
    values = [
        r["diverged.bad"]
        for r in metrics_table("micro", store=store).to_pylist()
        if r["seed"] == 1 and r["step"] in STEPS
    ]
    assert len(values) == len(STEPS) and all(math.isnan(v) for v in values)
    # seeds / sizes given as one value, not a list: the NaN report used to crash after the rows
    # were written (`seed in 1`), and a size string was matched as a substring
    again = evaluate_family("micro", [diverged], store=store, sizes="1l32", seeds=1, progress=False)
    assert len(again.nan_results) == len(STEPS)


@pytest.mark.parametrize(
    ("metrics", "kwargs", "message"),
    [
        (["perplexity"], {}, "unknown metric 'perplexity'; built-in metrics: loss, icl, induction"),
        ([lambda model, tokenizer: 1.0], {}, "needs a name"),
        (["loss"], {"sizes": ["9l9"]}, "family micro has no size 9l9; sizes: 1l32"),
        (["loss"], {"seeds": [7]}, "no seed 7; seeds: 1, 2"),
    ],
)
def test_bad_input_gets_its_error(store, metrics, kwargs, message):
    with pytest.raises(ZooError, match=message.replace("(", r"\(").replace(")", r"\)")):
        evaluate_family("micro", metrics, store=store, progress=False, **kwargs)


def test_unknown_family_lists_the_families(store):
    with pytest.raises(ZooError, match="no family 'nope'.*families: micro"):
        evaluate_family("nope", ["loss"], store=store, progress=False)


def test_a_metric_returning_garbage_is_an_error_and_nothing_half_written(store):
    def words(model, tokenizer):
        return "high"

    with pytest.raises(ZooError, match="metric 'words' on micro-1l32 seed 1 step 0 returned str"):
        evaluate_family("micro", [words], store=store, progress=False)
    assert "words" not in metrics_table("micro", store=store).column_names


def test_cli_eval_prints_summary_and_last_values(store, capsys):
    parser = argparse.ArgumentParser()
    cli_eval.register(parser.add_subparsers())
    args = parser.parse_args(["eval", "micro", "--metric", "loss", "--store", store.url, "--quiet"])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "skipped 12 already done" in out and "NaN results: 0" in out
    last = [line.split() for line in out.splitlines() if line.strip().startswith("1l32")]
    assert [row[:3] for row in last] == [["1l32", "1", "12"], ["1l32", "2", "12"]]
    assert all(np.isfinite(float(row[3])) for row in last)


def test_cells_are_evaluated_again_when_their_weights_change_or_when_asked(tmp_path, monkeypatch):
    """A run deleted and retrained under the same name must not keep the old model's numbers; a
    metric whose code changed under the same name is evaluated again with recompute=True; parts
    written before the weights column existed still read."""
    import shutil

    from zoo.eval.results import results_location

    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    store = Store.open(str(tmp_path / "store"))
    checkpoints = {"log_spaced_until": 4, "every": 4, "keyframe_every": 4}
    train_family(write_manifest(tmp_path, seeds=[1], steps=4, checkpoints=checkpoints),
                 store=store, threads=2, progress=False)

    def probe(model, tokenizer):
        return 1.0

    evaluate_family("micro", ["loss", probe], store=store, progress=False)
    before = {r["step"]: r["loss"] for r in metrics_table("micro", store=store).to_pylist()}
    again = evaluate_family("micro", ["loss", probe], store=store, progress=False)
    assert again.evaluated == 0

    def probe(model, tokenizer):  # a new definition under the same name
        return 2.0

    redone = evaluate_family("micro", [probe], store=store, progress=False, recompute=True)
    assert redone.evaluated == 4  # steps 0, 1, 2, 4
    probes = [r["probe"] for r in metrics_table("micro", store=store).to_pylist()]
    assert {p for p in probes if p is not None} == {2.0}
    # the run deleted and retrained with another learning rate, under the same name
    shutil.rmtree(store.run(RunId("micro", "1l32", 1)).location.local_path(""))
    train_family(write_manifest(tmp_path, "b.yaml", seeds=[1], steps=4, checkpoints=checkpoints,
                                optimizer={"lr": 3e-2, "betas": [0.9, 0.95], "eps": 1e-8,
                                           "weight_decay": 0.1, "clip": 1.0}),
                 store=store, threads=2, progress=False)
    fresh = evaluate_family("micro", ["loss"], store=store, progress=False)
    assert fresh.evaluated == 3  # steps 1, 2, 4 changed; step 0 (same init: same weights) is kept
    after = {r["step"]: r["loss"] for r in metrics_table("micro", store=store).to_pylist()
             if r["loss"] is not None}
    assert after[0] == before[0] and after[4] != before[4]
    # a part from before the weights column: read as unknown weights, kept
    location = results_location(store, "micro")
    name = location.list()[0]
    old = pq.read_table(location.local_path(name)).drop_columns(["weights"])
    pq.write_table(old, location.local_path(name))
    rows = metrics_table("micro", store=store).to_pylist()
    assert {r["step"]: r["loss"] for r in rows if r["loss"] is not None} == after


def test_user_metrics_named_like_table_columns_are_refused_before_any_work(store):
    """A metric named `seed` or `heldout` would collide with the table's own columns (`heldout`
    with the heldout.METRIC ones) and silently shadow them."""
    before = metrics_table("micro", store=store).column_names
    def metric(model, tokenizer):
        return {"loss": 1.0}

    for name in ("seed", "heldout", "loss", "my.metric"):
        with pytest.raises(ZooError, match="rename it"):
            evaluate_family("micro", {name: metric}, store=store, progress=False)
    assert metrics_table("micro", store=store).column_names == before
