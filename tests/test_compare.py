"""Comparisons: a model against itself differs by nothing (interval covers 0), a single seed gets
the explanation instead of an interval, mismatched paired seeds are named, the plot is written."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from micro_family import write_manifest

from zoo_common.errors import ZooError
from training.sweep import train_family
from zoo.cli import evaluation as cli_eval
from zoo.eval.comparison import compare
from zoo.eval.compare_plot import plot_comparison
from zoo.eval.tables import metrics_table
from zoo.eval.evaluate import evaluate_family
from zoo.store.store import Store

CHECKPOINTS = {"log_spaced_until": 4, "every": 4, "keyframe_every": 4}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """micro (seeds 1, 2) and other (seeds 1, 3; a wider model), loss + induction evaluated."""
    folder = tmp_path_factory.mktemp("compare")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_CACHE", str(folder / "cache"))
        store = Store.open(str(folder / "store"))
        train_family(
            write_manifest(folder, steps=12, checkpoints=CHECKPOINTS),
            store=store,
            threads=2,
            progress=False,
        )
        wider = [{"name": "1l48", "layers": 1, "width": 48, "heads": 2, "mlp_width": 96}]
        train_family(
            write_manifest(
                folder,
                "other.yaml",
                family="other",
                sizes=wider,
                seeds=[1, 3],
                steps=12,
                checkpoints=CHECKPOINTS,
            ),
            store=store,
            threads=2,
            progress=False,
        )
        for family in ("micro", "other"):
            evaluate_family(family, ["loss", "induction"], store=store, progress=False)
        yield store


def test_a_model_against_itself_has_a_difference_interval_covering_zero(store):
    result = compare("micro", "micro-1l32", "loss", store=store, n_resamples=2000)
    assert result.per_step.column("step").to_pylist() == [0, 1, 2, 4, 8, 12]
    lows = result.per_step.column("difference_low").to_pylist()
    highs = result.per_step.column("difference_high").to_pylist()
    assert all(lo <= 0 <= hi for lo, hi in zip(lows, highs))
    assert (
        result.test.difference == 0 and result.test.difference_low < 0 < result.test.difference_high
    )
    assert result.examples == "64 held-out examples" and result.test.n_examples == 64
    assert result.test.alternative == "two-sided" and result.test.p_value > 0.5
    one_sided = compare("micro", "micro-1l32", "loss", store=store, n_resamples=2000,
                        alternative="greater")
    assert 0.2 < one_sided.test.p_value < 0.8
    paired = compare("micro-1l32", "micro-1l32", "loss", paired=True, store=store, n_resamples=500)
    assert (
        paired.test.difference_low == paired.test.difference_high == 0 and paired.test.p_value == 1
    )


def test_a_wider_model_is_told_apart_and_the_table_prints(store):
    result = compare("micro-1l32", "other-1l48", "loss", store=store, n_resamples=2000)
    text = result.format()
    assert "Multi-Bootstrap at step 12 (unpaired; 2 + 2 seeds x 64 held-out examples" in text
    assert text.count("\n") > 8 and "(two-sided test of B - A = 0" in text
    assert "loss: lower is better, so B - A < 0 favours B (other-1l48)" in text
    assert "A, B: mean over seeds [95% t interval]" in text and "note: only 2 seeds" in text
    # the p-value answers the question asked, whichever way the difference lies
    less, greater = (compare("micro-1l32", "other-1l48", "loss", store=store, n_resamples=2000,
                             alternative=alt).test for alt in ("less", "greater"))
    assert less.p_value + greater.p_value >= 1
    smaller = min(less.p_value, greater.p_value)  # twice it, or the floor 1/2000 if at it
    assert smaller <= result.test.p_value <= min(1, 2 * smaller)
    assert "one-sided test of B - A >= 0 against B - A < 0" in less.format()
    with pytest.raises(ZooError, match="unknown alternative 'lower'"):
        compare("micro-1l32", "other-1l48", "loss", store=store, alternative="lower")
    means = result.per_step.to_pydict()
    assert means["difference"][0] == pytest.approx(means["b_mean"][0] - means["a_mean"][0])


def test_paired_mode_names_the_mismatched_seeds(store):
    with pytest.raises(
        ZooError, match=r"seeds only in micro-1l32: \[2\], only in other-1l48: \[3\]"
    ):
        compare("micro-1l32", "other-1l48", "loss", paired=True, store=store)


def test_a_single_seed_gets_point_values_and_the_explanation_not_an_interval(store, tmp_path):
    evaluate_family("other", ["icl"], store=store, seeds=[1], progress=False)
    evaluate_family("micro", ["icl"], store=store, progress=False)
    result = compare("micro-1l32", "other-1l48", "icl", store=store)
    assert result.test is None and not result.has_intervals and result.seeds_b == (1,)
    t = result.per_step.to_pydict()
    rows = metrics_table("other", store=store).to_pylist()
    b_last = next(r["icl"] for r in rows if r["seed"] == 1 and r["step"] == 12)
    a_last = [r["icl"] for r in metrics_table("micro", store=store).to_pylist() if r["step"] == 12]
    assert result.value_at(12) == pytest.approx((sum(a_last) / 2, b_last, b_last - sum(a_last) / 2))
    assert t["b_mean"][-1] == b_last and all(x != x for x in t["difference_low"])  # NaN: none
    text = result.format()
    assert "B = other-1l48 (seed 1); point values, no interval (one seed)" in text
    assert "A = micro-1l32 (mean of seeds 1, 2)" in text
    assert "one seed in B = other-1l48 (seed 1): no interval exists with one seed" in text
    assert "p =" not in text and "Multi-Bootstrap" not in text
    assert plot_comparison(result, tmp_path / "one.png")


@pytest.mark.parametrize(
    ("a", "b", "metric", "message"),
    [
        (
            "micro",
            "micro",
            "induction",
            (
                "induction has one value per field; choose one column: "
                "induction.L0H0, induction.L0H1, induction.max"
            ),
        ),
        ("micro", "micro", "perplexity", "no column 'perplexity' for micro-1l32; columns: "),
        ("micro", "ghost-1l32", "loss", "no family 'ghost'"),
    ],
)
def test_bad_input_gets_its_error(store, a, b, metric, message):
    with pytest.raises(ZooError, match=message):
        compare(a, b, metric, store=store)


def test_plot_is_written_and_not_trivial(store, tmp_path):
    result = compare("micro-1l32", "other-1l48", "induction.max", store=store, n_resamples=500)
    path = plot_comparison(result, tmp_path / "plots" / "cmp.png")
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert not list((tmp_path / "plots").glob("*.partial*"))


def test_cli_compare_prints_and_plots(store, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli_eval.register(parser.add_subparsers())
    out = tmp_path / "c.png"
    args = parser.parse_args(
        [
            "compare",
            "micro-1l32",
            "other-1l48",
            "--metric",
            "loss",
            "--store",
            store.url,
            "--out",
            str(out),
            "--resamples",
            "500",
        ]
    )
    assert args.handler(args) == 0
    printed = capsys.readouterr().out
    assert f"plot: {out}" in printed and out.stat().st_size > 20_000


def test_losses_measured_on_another_or_on_mixed_held_out_sets_are_not_resampled_as_examples(
        tmp_path, monkeypatch, capsys):
    """The per-example test re-scores the default held-out set: it may only stand in for losses
    that were measured on that set; losses of one model's seeds from different sets are refused."""
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    store = Store.open(str(tmp_path / "store"))
    train_family(write_manifest(tmp_path, steps=4, checkpoints=CHECKPOINTS), store=store,
                 threads=2, progress=False)
    evaluate_family("micro", ["loss"], store=store, heldout_samples=8, progress=False)
    result = compare("micro", "micro", "loss", store=store, n_resamples=200)
    assert result.test.n_examples == 1 and "not resampled" in result.examples
    evaluate_family("micro", ["loss"], store=store, seeds=[1], progress=False)  # the default set
    with pytest.raises(ZooError, match="2 different held-out sets"):
        compare("micro", "micro", "loss", store=store, n_resamples=200)
    # the table says which set each loss came from, and zoo eval warns about the mix
    rows = metrics_table("micro", store=store).to_pylist()
    sets = {seed: {r["heldout.loss"] for r in rows if r["seed"] == seed and r["loss"] is not None}
            for seed in (1, 2)}
    assert len(sets[1]) == len(sets[2]) == 1 and sets[1] != sets[2]
    parser = argparse.ArgumentParser()
    cli_eval.register(parser.add_subparsers())
    args = parser.parse_args(["eval", "micro", "--metric", "loss", "--seeds", "1", "--store",
                              store.url, "--quiet"])
    assert args.handler(args) == 0
    err = capsys.readouterr().err
    assert "measured on 2 different held-out sets" in err and "--force" in err
