"""Seed variance of the held-out loss curve: how much of a loss curve is the seed?

    python examples/seed_variance.py                   # uses ./zoo-store (or $ZOO_STORE)
    python examples/seed_variance.py --store /tmp/s --model tiny-1l64

If the model is not in the store yet, its runs are trained first (`tiny-1l64`: 3 seeds, a few
minutes on 2 CPU cores). Then: evaluate the held-out loss at every stored step, print the mean and
95% bootstrap interval over seeds per step, the spread (max - min over seeds) relative to the
interval, and write a plot of the curves per seed with the band.
"""

from __future__ import annotations

import argparse

import numpy as np

import zoo
from zoo.eval.comparison import compare
from zoo.eval.compare_plot import plot_comparison
from zoo.eval.evaluate import evaluate_family
from zoo.config.names import parse_model_name
from zoo.stats import seed_intervals
from zoo.store.store import Store
from zoo.eval.tables import metrics_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", default=None)
    parser.add_argument("--model", default="tiny-1l64")
    parser.add_argument("--manifest", default="manifests/tiny.yaml")
    parser.add_argument("--out", default="seed_variance.png")
    args = parser.parse_args()
    store = Store.open(args.store)
    family, size = parse_model_name(args.model)
    if args.model not in {m.name for m in zoo.list_models(store=store)}:
        from training.sweep import train_family  # the write side, only when runs are missing

        train_family(args.manifest, store=store, only=[size])

    evaluate_family(family, ["loss"], store=store, sizes=[size])
    table = metrics_table(family, store=store, sizes=[size])
    evaluated = table.filter(table.column("loss").is_valid())
    curve = seed_intervals(evaluated, value="loss")  # bootstrap over seeds, per step

    frame = evaluated.to_pandas()
    spread = frame.groupby("step").loss.agg(lambda v: v.max() - v.min())
    print(f"{args.model}: held-out loss, mean over {curve.n_seeds.max()} seeds [95% interval]")
    print(f"{'step':>6} {'mean':>8} {'low':>8} {'high':>8} {'max-min':>8} {'CI width':>8}")
    for step, mean, low, high in zip(curve.steps, curve.means, curve.lows, curve.highs):
        print(
            f"{step:>6} {mean:>8.4f} {low:>8.4f} {high:>8.4f} {spread[step]:>8.4f} {high - low:>8.4f}"
        )
    late = curve.steps >= curve.steps.max() / 2
    print(
        f"\nin the second half of training the seed-to-seed spread averages "
        f"{np.mean(spread.to_numpy()[late]):.4f} nats; differences between models smaller than "
        "this need more seeds before they mean anything."
    )
    # The same model as both arms: the plot shows the per-seed curves and the band; the
    # difference panel is 0 by construction (a sanity check of the pipeline).
    picture = compare(args.model, args.model, "loss", paired=True, store=store)
    print(f"plot: {plot_comparison(picture, args.out)}")


if __name__ == "__main__":
    main()
