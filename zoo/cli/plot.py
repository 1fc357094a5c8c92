"""`zoo plot`: seed-banded curves of one metric over steps, for one or more models."""

from __future__ import annotations

import argparse

from zoo.cli.common import add_store_argument, open_store, positive_int

PLOT_EPILOG = """\
MODEL is a model name (tiny-2l128) or a family with one size; give several to draw them together.
METRIC is any column of zoo.metrics(family): train_loss, lr, grad_norm (at every training step),
loss, icl, induction.max, induction.L1H2 (at the steps `zoo eval` evaluated).

Each model: the mean over seeds (thick line), its interval over seeds (band; Student-t by default,
as zoo.stats.seed_intervals) and one thin line per seed, steps on a symlog axis.
--smooth K replaces each seed's curve by a CENTERED moving average over K stored points (points
i-(K-1)//2 .. i+K//2, fewer at the two ends) before the mean and band are taken: a drop stays at
its step (a trailing average would move it later).

examples:
  zoo plot tiny-1l64 tiny-2l64 tiny-2l128 --metric train_loss --smooth 9 --out train.png
  zoo plot tiny-2l128 --metric loss --out heldout.png
  zoo plot toy-solu2l toy-gelu2l --metric induction.max --out bump.png
  zoo plot induction-gelu2l induction-solu2l induction-llama2l --metric neurons.token_entropy \
      --metric neurons.kurtosis --metric neurons.firing --metric loss --out neurons.png

--by PARAM draws one measure against a parameter of the data instead of over steps: FAMILY (one
name) is a family whose sizes draw their data from builtin:sparse_features (the superposition
family), PARAM one of sparsity, importance, n (the source's parameters, read from each run's
run.json) or m (the hidden width). For every size: the measure at each seed's last evaluated step,
one dot per seed, and their mean with its interval; sizes that share the other parameters (n, m,
importance) form one line. Sparsity is drawn on a log scale of 1 - sparsity, sparser to the right,
labelled with the sparsity values. Evaluate first: zoo eval FAMILY --metric superposition.

  zoo plot superposition --metric superposition.represented --by sparsity --out rep.png
  zoo plot superposition --metric superposition.dims_per_feature --by sparsity --out dims.png

The PNG is written only to --out, whole or not at all. Needs the plot extra:
pip install 'model-zoo[plot]'.
"""


def register(subparsers) -> None:
    plot = subparsers.add_parser(
        "plot",
        help="draw one metric over steps: mean over seeds, its band, one thin line per seed",
        description="Draw one metric over steps for one or more models: the mean over seeds "
        "with its interval band and one thin line per seed, optionally smoothed.",
        epilog=PLOT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    plot.add_argument("models", nargs="+", metavar="MODEL",
                      help="model name (tiny-2l128) or one-size family; several: one plot; with "
                           "--by: one family")
    plot.add_argument("--metric", required=True, metavar="M", action="append",
                      help="a column of zoo.metrics, e.g. train_loss or loss; give it several "
                           "times for one panel per metric (models side by side in each)")
    plot.add_argument("--smooth", type=positive_int, default=1, metavar="K",
                      help="centered moving average over K stored points, per seed, before the "
                           "mean and band (default 1: none)")
    plot.add_argument("--by", default=None, metavar="PARAM",
                      help="draw the metric against a data parameter over a family's sizes, at "
                           "each seed's last evaluated step: sparsity, importance, n or m")
    plot.add_argument("--out", default=None, metavar="PNG", help="the PNG file to write (required)")
    plot.add_argument("--confidence", type=float, default=0.95,
                      help="interval level (default 0.95)")
    plot.add_argument("--interval", choices=("t", "percentile", "bca"), default="t",
                      help="interval over seeds: Student-t (default; keeps its coverage at 3-10 "
                           "seeds), or a bootstrap (percentile, bca) for many seeds")
    add_store_argument(plot)
    plot.set_defaults(handler=_plot)


def _plot(args) -> int:
    from zoo_common.errors import ZooError

    if not args.out:
        suggestion = "-".join([*args.models, args.metric[0].replace(".", "_")]) + ".png"
        raise ZooError(f"zoo plot writes its picture only where you say: add --out FILE.png "
                       f"(e.g. --out {suggestion})")
    from zoo.eval.seed_plot import check_png_path, plot_seed_curves, pyplot, seed_curves

    check_png_path(args.out)
    if args.by is not None:
        return _plot_by(args)
    pyplot()  # without the plot extra: its error now, before any work
    store = open_store(args)
    curves = [seed_curves(name, metric, store=store, smooth=args.smooth,
                          confidence=args.confidence, method=args.interval)
              for metric in dict.fromkeys(args.metric) for name in args.models]
    path = plot_seed_curves(curves, args.out)
    for model in curves:
        print(_summary(model))
    print(f"plot: {path}")
    return 0


def _plot_by(args) -> int:
    from zoo.eval.parameter_plot import check_by, parameter_points, plot_by_parameter, summary
    from zoo.eval.seed_plot import pyplot
    from zoo_common.errors import ArgumentError

    check_by(args.by)
    if len(args.metric) != 1:
        raise ArgumentError(f"--by draws one metric; got {len(args.metric)} ({', '.join(args.metric)})")
    args.metric = args.metric[0]
    if len(args.models) != 1:
        raise ArgumentError(f"--by draws every size of one family; got {len(args.models)} names "
                            f"({', '.join(args.models)})")
    if args.smooth > 1:
        raise ArgumentError("--smooth smooths curves over steps; --by takes each seed's last "
                            "evaluated value, so there is nothing to smooth: drop --smooth")
    pyplot()  # without the plot extra: its error now, before any work
    points = parameter_points(args.models[0], args.metric, args.by, store=open_store(args),
                              confidence=args.confidence, method=args.interval)
    path = plot_by_parameter(points, args.out)
    for line in summary(points):
        print(line)
    print(f"plot: {path}")
    return 0


def _summary(model) -> str:
    """One line per model: seeds, steps, and the last step's mean with its interval."""
    smoothed = f", smoothed over {model.smooth} points" if model.smooth > 1 else ""
    r = model.intervals
    if r is None:
        steps, values = model.curve(model.seeds[0])
        return (f"{model.name}: 1 seed ({model.seeds[0]}), {len(steps)} steps "
                f"{steps[0]}..{steps[-1]}{smoothed}; {model.metric} at step {steps[-1]}: "
                f"{values[-1]:.4g} (no interval from one seed)")
    return (f"{model.name}: {len(model.seeds)} seeds, {len(r.steps)} steps "
            f"{r.steps[0]}..{r.steps[-1]}{smoothed}; {model.metric} at step {r.steps[-1]}: "
            f"{r.means[-1]:.4g} [{r.lows[-1]:.4g}, {r.highs[-1]:.4g}] (mean over seeds, "
            f"{r.confidence:.0%} interval)")
