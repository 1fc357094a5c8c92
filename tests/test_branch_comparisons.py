"""A branch is measured like its parent: at the branch point, where the weights are the same, a
branch trained on other data reads its parent's values (its probes come from the first run of its
line); a one-seed comparison shows point values and says why there is no interval; a branch's
model is spelled FAMILY-SIZE@LABEL in every output."""
from __future__ import annotations

import math

import numpy as np
import pytest
from micro_family import write_manifest

import zoo
from training.branching import branch
from training.sweep import train_family
from zoo.cli import main
from zoo.config.names import RunId
from zoo.eval.comparison import compare
from zoo.eval.evaluate import evaluate_family
from zoo.eval.results import ResultsLog
from zoo.eval.seed_plot import seed_curves
from zoo.store.store import Store

CHECKPOINTS = {"log_spaced_until": 4, "every": 6, "keyframe_every": 8}  # 0 1 2 4 6 8 12
METRICS = ["loss", "induction", "repetition"]
PARENT = RunId("micro", "1l32", 1)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """micro, one seed, 12 steps; its branch `other` from step 8 on another corpus, evaluated."""
    folder = tmp_path_factory.mktemp("branch-comparisons")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_CACHE", str(folder / "cache"))
        store = Store.open(str(folder / "store"))
        train_family(write_manifest(folder, seeds=[1], steps=12, checkpoints=CHECKPOINTS),
                     store=store, threads=2, progress=False)
        branch("micro-1l32", seed=1, from_step=8, label="other", store=store, progress=False,
               replace_data="builtin:pydoc?max_docs=60")
        evaluate_family("micro", METRICS, store=store, progress=False)
        yield store


@pytest.fixture(autouse=True)
def _cache(store, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(store.location.local_path().parent / "cache"))


def _columns(table) -> list[str]:
    return [c for c in table.column_names if c.split(".")[0] in METRICS]


def _at(family: str, step: int, store) -> dict:
    [row] = [r for r in zoo.metrics(family, store=store).to_pylist() if r["step"] == step]
    return row


def test_a_branch_on_other_data_reads_its_parents_values_at_the_branch_point(store):
    fingerprint = lambda run_id: store.run(run_id).read_json("run.json")["corpus_fingerprint"]
    own, parents = fingerprint(PARENT.with_branch("other")), fingerprint(PARENT)
    assert own != parents  # the branch trains on another corpus
    report = evaluate_family("micro@other", METRICS, store=store, progress=False)
    assert f"corpus {parents[:16]} of micro-1l32/seed-1, the first run" in report.probes
    assert "probes: corpus" in report.summary()
    columns = _columns(zoo.metrics("micro", store=store))
    assert {"loss", "induction.max", "induction.L0H0", "repetition.drop"} <= set(columns)
    parent, child = _at("micro", 8, store), _at("micro@other", 8, store)
    assert {c: child[c] for c in columns} == {c: parent[c] for c in columns}  # bit for bit
    later = _at("micro", 12, store), _at("micro@other", 12, store)
    assert later[0]["loss"] != later[1]["loss"]  # after the branch point the weights differ
    # every row says which corpus its probes came from: the parent's, for the branch too
    for family in ("micro", "micro@other"):
        rows = ResultsLog(store, family).read()
        assert set(rows.column("probes").to_pylist()) == {parents}
    # per-example losses score the same held-out samples, so they agree at the branch point
    a = zoo.per_example("micro-1l32", step=8, store=store)
    b = zoo.per_example("micro-1l32", step=8, store=store, branch="other")
    assert b.name == "micro-1l32@other" and a.heldout == b.heldout
    assert np.array_equal(a.values, b.values)


def test_rows_measured_on_a_branchs_own_probes_are_measured_again(store):
    """Rows from before the probes column were drawn from the run's own corpus: for a branch on
    other data they are not its line's probes, so they do not count as done."""
    evaluate_family("micro@other", ["induction"], store=store, progress=False)
    right = _at("micro@other", 12, store)["induction.max"]
    log = ResultsLog(store, "micro@other")
    fields = [c.removeprefix("induction.") for c in zoo.metrics("micro@other", store=store).column_names
              if c.startswith("induction.")]
    log.add("1l32", 1, 12, "induction", dict.fromkeys(fields, -1.0), probes="")  # an older version
    log.flush()
    assert _at("micro@other", 12, store)["induction.max"] == -1.0
    report = evaluate_family("micro@other", ["induction"], store=store, progress=False)
    assert report.evaluated == 1 and _at("micro@other", 12, store)["induction.max"] == right
    assert evaluate_family("micro", ["induction"], store=store, progress=False).evaluated == 0


def test_a_one_seed_comparison_shows_point_values_and_says_why_there_is_no_interval(store):
    evaluate_family("micro", ["loss"], store=store, progress=False, branch="other")
    result = compare("micro-1l32", "micro-1l32@other", "loss", paired=True, store=store)
    assert result.test is None and not result.has_intervals
    assert result.per_step.column("step").to_pylist() == [8, 12] and result.at_step == 12
    a, b, difference = result.value_at(8)
    assert a == b == _at("micro", 8, store)["loss"] and difference == 0.0
    a, b, difference = result.value_at(12)
    assert (a, b) == (_at("micro", 12, store)["loss"], _at("micro@other", 12, store)["loss"])
    assert difference == b - a != 0
    assert all(math.isnan(x) for x in result.per_step.column("difference_low").to_pylist())
    text = result.format()
    assert "A = micro-1l32 (seed 1), B = micro-1l32@other (seed 1); point values" in text
    assert "at step 12 (one seed: no interval, no test):" in text
    assert "no interval exists with one seed" in text and "p =" not in text


def test_zoo_compare_with_one_seed_prints_the_points_and_draws_them(store, tmp_path, capsys):
    plot = tmp_path / "one-seed.png"
    assert main(["compare", "micro-1l32", "micro-1l32", "--branch", "other", "--metric",
                 "train_loss", "--out", str(plot), "--store", store.url]) == 0
    out = capsys.readouterr().out
    assert "A = micro-1l32 (seed 1), B = micro-1l32@other (seed 1)" in out
    assert "branch point: step 8" in out and "no interval exists with one seed" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()
            if line.strip()[:2] in ("9 ", "12")}
    assert set(rows) == {"9", "12"} and all(len(cells) == 3 for cells in rows.values())
    assert float(rows["12"][2]) == pytest.approx(float(rows["12"][1]) - float(rows["12"][0]),
                                                 abs=1e-4)
    assert plot.stat().st_size > 10_000
    # a family with one size, and its branch: the canonical model names in the output
    assert main(["compare", "micro", "micro", "--branch", "other", "--metric", "induction.max",
                 "--store", store.url]) == 0
    out = capsys.readouterr().out
    assert "A = micro-1l32 (seed 1), B = micro-1l32@other (seed 1)" in out
    assert "micro@other-1l32" not in out


def test_a_branchs_model_is_spelled_family_size_at_label_everywhere(store, tmp_path, capsys):
    assert seed_curves("micro@other", "loss", store=store).name == "micro-1l32@other"
    plot = tmp_path / "plot.png"
    assert main(["plot", "micro@other", "micro-1l32", "--metric", "loss", "--out", str(plot),
                 "--store", store.url]) == 0
    out = capsys.readouterr().out
    assert "micro-1l32@other: 1 seed (1)" in out and "micro@other-1l32" not in out
    assert main(["eval", "micro@other", "--metric", "loss", "--store", store.url, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "at each run's last evaluated step (micro-1l32@other):" in out
    assert "probes: corpus" in out and "micro@other-1l32" not in out
    # the other spelling gets one message that names the right one
    assert main(["compare", "micro-1l32", "micro@other-1l32", "--metric", "loss",
                 "--store", store.url]) == 2
    err = capsys.readouterr().err
    assert "a branch of a model is written <family>-<size>@<label>, e.g. micro-1l32@other" in err
    assert "Traceback" not in err
    assert main(["eval", "micro-1l32@other", "--metric", "loss", "--store", store.url]) == 2
    assert "its family is micro@other, with --sizes 1l32" in capsys.readouterr().err


def test_every_table_read_takes_branch(store):
    by_keyword = zoo.metrics("micro", store=store, branch="other")
    assert by_keyword.equals(zoo.metrics("micro@other", store=store))
    assert set(by_keyword.column("family").to_pylist()) == {"micro@other"}
    with pytest.raises(zoo.ZooError, match="names branch 'other' but branch='nodup' was given"):
        zoo.metrics("micro@other", store=store, branch="nodup")
    scores = zoo.per_example("micro-1l32@other", step=12, store=store)
    assert np.array_equal(scores.values,
                          zoo.per_example("micro-1l32", step=12, store=store, branch="other").values)
