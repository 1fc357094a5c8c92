"""`zoo plot`: one command draws a metric's seed-banded curves into a real PNG, only where --out
says; smoothing is a centered moving average per seed, taken before the band; a metric that is no
column, a missing --out and a missing matplotlib each get one clear error."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from zoo_common.errors import ZooError
from zoo.cli import main
from zoo.eval.results import ResultsLog
from zoo.eval.seed_plot import (
    SeedCurves, moving_average, plot_seed_curves, pyplot, seed_curves,
)

NAME = "micro-1l32"


@pytest.fixture
def store(evaluated_micro_store):
    """micro (seeds 1, 2; 12 steps), held-out loss evaluated at every stored step (conftest)."""
    return evaluated_micro_store


def test_zoo_plot_writes_a_png_only_to_out(store, tmp_path, capsys):
    out = tmp_path / "plots" / "train.png"
    argv = ["plot", NAME, "--metric", "train_loss", "--smooth", "3", "--store", store.url]
    assert main([*argv, "--out", str(out)]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert [p.name for p in out.parent.iterdir()] == ["train.png"]  # no partial file left
    printed = capsys.readouterr().out
    assert f"plot: {out}" in printed
    assert "micro-1l32: 2 seeds, 12 steps 1..12, smoothed over 3 points; train_loss" in printed
    assert main(["plot", "micro", "--metric", "loss", "--store", store.url,
                 "--out", str(tmp_path / "loss.png")]) == 0  # a one-size family, evaluated steps
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "micro-1l32: 2 seeds, 6 steps 0..12; loss at step 12: " in capsys.readouterr().out
    assert main(["plot", "micro", NAME, "--metric", "loss", "--store", store.url,
                 "--out", str(tmp_path / "twice.png")]) == 2
    assert "the same model twice (by two names" in capsys.readouterr().err
    assert not (tmp_path / "twice.png").exists()


def test_without_out_nothing_is_written_and_the_error_says_how(store, tmp_path, monkeypatch,
                                                               capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["plot", NAME, "--metric", "induction.max", "--store", store.url]) == 2
    err = capsys.readouterr().err
    assert "add --out FILE.png (e.g. --out micro-1l32-induction_max.png)" in err
    assert main(["plot", NAME, "--metric", "loss", "--store", store.url, "--out", "p.pdf"]) == 2
    assert "the plot is a PNG: name a .png file to write, got 'p.pdf'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_metric_that_is_no_column_gets_one_error_listing_the_columns(store, tmp_path, capsys):
    out = tmp_path / "p.png"
    assert main(["plot", NAME, "--metric", "perplexity", "--store", store.url,
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("zoo: error: no column 'perplexity' for micro-1l32; columns: ")
    assert "train_loss" in err and ", loss" in err and err.count("\n") == 0
    assert not out.exists()


def test_smoothing_is_a_centered_moving_average_per_seed_before_the_band(store):
    raw = seed_curves(NAME, "train_loss", store=store)
    smooth = seed_curves(NAME, "train_loss", store=store, smooth=5)
    assert raw.seeds == smooth.seeds == (1, 2) and smooth.smooth == 5
    for seed in raw.seeds:
        steps, values = raw.curve(seed)
        smooth_steps, smoothed = smooth.curve(seed)
        assert np.array_equal(steps, smooth_steps) and steps.tolist() == list(range(1, 13))
        assert np.allclose(smoothed, moving_average(values, 5))
        assert not np.allclose(smoothed, values)
        assert np.abs(np.diff(smoothed)).sum() < np.abs(np.diff(values)).sum()
    # the band is taken over the smoothed seeds: its mean is the smoothed mean
    assert np.allclose(smooth.intervals.means, moving_average(raw.intervals.means, 5))
    assert not np.allclose(smooth.intervals.highs, raw.intervals.highs)
    assert raw.intervals.method == "t" and set(raw.intervals.n_seeds.tolist()) == {2}
    evaluated = seed_curves("micro", "loss", store=store)
    assert evaluated.intervals.steps.tolist() == [0, 1, 2, 4, 8, 12]


def test_moving_average_is_centered_and_a_nan_spreads_only_over_its_windows():
    assert moving_average([0, 0, 3, 0, 0], 3).tolist() == [0, 1, 1, 1, 0]
    assert moving_average([1, 2, 3, 4], 2).tolist() == [1.5, 2.5, 3.5, 4]  # i .. i+1
    assert moving_average([1, 2, 3], 1).tolist() == [1, 2, 3]
    assert np.isnan(moving_average([1, np.nan, 1, 1, 1], 3)).tolist() == [
        True, True, True, False, False]
    with pytest.raises(ZooError, match="smooth must be >= 1"):
        moving_average([1, 2], 0)


def test_without_matplotlib_one_error_names_the_extra(store, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    with pytest.raises(ZooError, match=r"pip install 'model-zoo\[plot\]'"):
        pyplot()
    assert main(["plot", NAME, "--metric", "train_loss", "--store", store.url,
                 "--out", str(tmp_path / "p.png")]) == 2
    assert "the `plot` extra: pip install 'model-zoo[plot]'" in capsys.readouterr().err


def test_help_has_examples_and_says_how_it_smooths(capsys):
    with pytest.raises(SystemExit):
        main(["plot", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "zoo plot tiny-2l128 --metric loss --out heldout.png" in text
    assert "CENTERED moving average over K stored points" in text


def test_values_from_different_held_out_sets_are_not_averaged(store):
    log = ResultsLog(store, "micro")
    row = next(r for r in log.read().to_pylist()
               if (r["seed"], r["step"], r["metric"]) == (1, 12, "loss"))
    cell = (row["size"], row["seed"], row["step"], row["metric"], {"": row["value"]})
    log.add(*cell, heldout="another-set", weights=row["weights"])  # the latest row wins
    log.flush()
    try:
        with pytest.raises(ZooError, match="micro-1l32: its loss values were measured on 2 "
                                           "different held-out sets"):
            seed_curves(NAME, "loss", store=store)
    finally:  # the other tests' store again
        log.add(*cell, heldout=row["heldout"], weights=row["weights"])
        log.flush()
    assert seed_curves(NAME, "loss", store=store).intervals is not None


def test_one_seed_is_drawn_without_a_band(store, tmp_path):
    both = seed_curves(NAME, "train_loss", store=store, smooth=3)
    one = SeedCurves("seed 1 alone", "train_loss", (1,), both.curves.filter(pc.field("seed") == 1),
                     None, 3)
    path = plot_seed_curves([one, both], tmp_path / "one.png")
    assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"



def test_several_metrics_are_one_panel_each(store, tmp_path, capsys):
    import matplotlib.image

    out = tmp_path / "panels.png"
    assert main(["plot", NAME, "--metric", "train_loss", "--metric", "loss", "--store", store.url,
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "train_loss at step 12" in printed and "loss at step 12" in printed
    height, width, _ = matplotlib.image.imread(out).shape
    single = matplotlib.image.imread(plot_seed_curves([seed_curves(NAME, "loss", store=store)],
                                                      tmp_path / "one.png")).shape
    assert width == 2 * single[1] and height == single[0]  # two panels side by side
    assert main(["plot", "micro", "--metric", "loss", "--metric", "train_loss", "--by", "n",
                 "--store", store.url, "--out", str(tmp_path / "by.png")]) == 2
    assert "--by draws one metric; got 2" in capsys.readouterr().err
