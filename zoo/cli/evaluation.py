"""`zoo eval` (evaluation sweeps over a family) and `zoo compare` (two models across seeds)."""

from __future__ import annotations

import argparse
import math
import re
import sys

from zoo.cli.common import add_store_argument, open_store

_PER_HEAD = re.compile(r"\.L\d+H\d+$")
EVAL_EPILOG = """\
metrics: loss (held-out loss: documents the training corpus does not contain), icl (in-context
learning score: late-context loss minus early), induction (per-head induction score on repeated
random tokens; columns induction.max, induction.L0H0, ...), repetition (loss on the first and
second copy of repeated random tokens: repetition.first, .second, .drop in nats), and for task
families (builtin:modular) accuracy (accuracy.train_acc, .test_acc, .train_loss, .test_loss on
each run's own split) and fourier (fourier.key_share: the embedding's norm in its 5 key
frequencies). Your own f(model, tokenizer) -> float | dict works from Python:
zoo.eval.evaluate.evaluate_family("tiny", ["loss", f]).

examples:
  zoo eval tiny --metric loss --metric induction
  zoo eval tiny --metric icl --sizes 2l128
  zoo eval grokking --metric accuracy --metric fourier

Results are appended to evals/FAMILY/ in the store; a re-run skips what is done. The table of
training metrics + results: zoo.metrics("tiny") in Python (pyarrow; .to_pandas()).
"""

COMPARE_EPILOG = """\
A and B are model names (tiny-2l128) or families with one size. METRIC is any column of
zoo.metrics(family): loss, icl, induction.max, induction.L1H2, train_loss, ...

examples:
  zoo compare tiny-2l64 tiny-2l128 --metric loss
  zoo compare toy-gelu2l toy-solu2l --metric induction.max --paired --out bump.png
  zoo compare tiny-1l64 tiny-2l128 --metric loss --alternative less   is B's loss lower?
  zoo compare tiny-2l128 tiny-2l128 --branch nodup --metric train_loss --out branch.png
      a model against its branch `nodup` (zoo branch ... --seed all), paired by seed, at every
      step from the branch point; the plot marks it. Evaluated metrics need `zoo eval tiny@nodup`.
"""


def register(subparsers) -> None:
    ev = subparsers.add_parser(
        "eval",
        help="evaluate metrics over every (size, seed, stored step) of a family",
        description="Evaluate metrics over every (size, seed, stored step) of a family.",
        epilog=EVAL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument("family", help="family name, e.g. tiny (tiny@LABEL: its branch LABEL)")
    ev.add_argument(
        "--metric",
        action="append",
        required=True,
        metavar="M",
        help=("loss (held-out), icl (in-context learning score), induction (the best head's "
              "induction stripe), repetition (second-copy loss drop), accuracy (train/test, "
              "tasks), fourier (key frequencies, modular arithmetic), superposition (the "
              "superposition model's W), neurons (how readable the MLP neurons are); repeatable"),
    )
    ev.add_argument("--sizes", nargs="+", metavar="SIZE", help="only these sizes (default: all)")
    ev.add_argument("--seeds", nargs="+", type=int, metavar="SEED", help="only these seeds")
    ev.add_argument(
        "--heldout",
        metavar="SOURCE",
        default=None,
        help="held-out documents for loss/icl (default: derived from the training source)",
    )
    ev.add_argument(
        "--heldout-samples",
        type=int,
        default=64,
        metavar="N",
        help="held-out samples for loss/icl (default 64)",
    )
    ev.add_argument("--force", action="store_true",
                    help="evaluate every cell again (cells already measured on the same weights "
                         "and held-out set are skipped otherwise)")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    add_store_argument(ev)
    ev.set_defaults(handler=_eval)

    cmp = subparsers.add_parser(
        "compare",
        help="compare two models across seeds on one metric (table + plot)",
        description="Compare two models across seeds: per-step means with intervals over seeds, "
        "the difference B - A, and the Multi-Bootstrap p-value at the final (or chosen) step.",
        epilog=COMPARE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmp.add_argument("a", metavar="A", help="model name or one-size family")
    cmp.add_argument("b", metavar="B", help="model name or one-size family")
    cmp.add_argument(
        "--metric", required=True, metavar="M", help="a column of zoo.metrics, e.g. loss"
    )
    cmp.add_argument(
        "--paired",
        action="store_true",
        help="the same seeds trained both arms (seed sets must match)",
    )
    cmp.add_argument(
        "--step", type=int, default=None, help="test at this step (default: the last shared)"
    )
    cmp.add_argument(
        "--out", default=None, metavar="PNG", help="also write the plot to this file"
    )
    cmp.add_argument(
        "--resamples", type=int, default=10_000, help="bootstrap resamples (default 10000)"
    )
    cmp.add_argument("--confidence", type=float, default=0.95, help="interval level (default 0.95)")
    cmp.add_argument("--alternative", choices=("two-sided", "less", "greater"), default="two-sided",
                     help="the test at the chosen step: two-sided (B - A = 0, default), less (is B "
                          "lower? e.g. a loss), greater (is B higher?)")
    cmp.add_argument("--interval", choices=("t", "percentile", "bca"), default="t",
                     help="interval over seeds: Student-t (default; keeps its coverage at 3-10 "
                          "seeds), or a bootstrap (percentile, bca) for many seeds")
    cmp.add_argument("--branch", metavar="LABEL", default=None,
                     help="B is B's branch LABEL (zoo branch), paired with A by seed: "
                          "`zoo compare M M --branch L --metric train_loss`")
    cmp.add_argument("--heldout", metavar="SOURCE", default=None,
                     help="for loss / neurons.*: the held-out source they were evaluated on "
                          "(as given to zoo eval), so the final test resamples those examples")
    add_store_argument(cmp)
    cmp.set_defaults(handler=_compare)


_HEADERS = {"loss": "held-out loss"}  # "loss" alone does not say which loss


def _eval(args) -> int:
    from zoo.eval.evaluate import evaluate_family
    from zoo.eval.tables import metrics_table

    store = open_store(args)
    report = evaluate_family(
        args.family,
        args.metric,
        store=store,
        sizes=args.sizes,
        seeds=args.seeds,
        heldout=args.heldout,
        heldout_samples=args.heldout_samples,
        progress=not args.quiet,
        recompute=args.force,
    )
    print(report.summary())
    table = metrics_table(args.family, store=store, sizes=args.sizes).to_pylist()
    columns = [
        c
        for c in (table[0] if table else {})  # per-head columns are too many to print
        if c.split(".")[0] in report.metrics and not _PER_HEAD.search(c)
    ]
    _note_mixed_heldout_sets(table, report.metrics, args)
    last: dict = {}
    for row in table:
        if all(row[c] is not None for c in columns) and (
            not args.seeds or row["seed"] in args.seeds
        ):
            last[(row["size"], row["seed"])] = row
    if columns and last:
        from zoo.config.names import arm_name

        models = ", ".join(dict.fromkeys(arm_name(report.family, size) for size, _ in sorted(last)))
        print(
            f"\nat each run's last evaluated step ({models}):\n{'size':>10} {'seed':>5} {'step':>8} "
            + " ".join(f"{_HEADERS.get(c, c):>14}" for c in columns)
        )
        for (size, seed), row in sorted(last.items()):
            print(
                f"{size:>10} {seed:>5} {row['step']:>8} "
                + " ".join(f"{_num(row[c]):>14}" for c in columns)
            )
    if report.nan_results:
        print(
            f"zoo: warning: {len(report.nan_results)} NaN result(s), listed above", file=sys.stderr
        )
    return 0


def _note_mixed_heldout_sets(table: list[dict], metrics, args) -> None:
    """A warning when one metric's stored values come from different held-out sets (e.g. some
    seeds evaluated with --heldout-samples 8, others with the default): their mean means nothing."""
    from zoo.eval.tables import HELDOUT_PREFIX as prefix

    for metric in metrics:
        sets = {row[prefix + metric] for row in table if row.get(prefix + metric)}
        if len(sets) > 1:
            print(f"zoo: warning: the stored {metric!r} values of {args.family} were measured on "
                  f"{len(sets)} different held-out sets; evaluate every run with one setting "
                  f"(zoo eval {args.family} --metric {metric} --force, with the same --heldout / "
                  f"--heldout-samples) before comparing them", file=sys.stderr)


def _num(value) -> str:
    return "NaN" if isinstance(value, float) and math.isnan(value) else f"{value:.5g}"


def _compare(args) -> int:
    from zoo_common.errors import ZooError

    if getattr(args, "branch", None):  # B is A's branch, paired by seed
        from zoo.config.names import split_branch

        base, label = split_branch(args.b, args.branch)
        args.b, args.paired = f"{base}@{label}", True
    if args.a == args.b:
        raise ZooError(f"compare needs two different models, got {args.a} twice; one model's "
                       f"seeds are in `zoo show {args.a}` and zoo.stats.seed_intervals")
    from zoo.eval.comparison import compare
    from zoo.eval.compare_plot import plot_comparison

    result = compare(
        args.a,
        args.b,
        args.metric,
        paired=args.paired,
        step=args.step,
        store=open_store(args),
        n_resamples=args.resamples,
        confidence=args.confidence,
        alternative=args.alternative,
        method=args.interval,
        heldout=args.heldout,
    )
    print(result.format())
    if args.out:
        print(f"\nplot: {plot_comparison(result, args.out)}")
    else:
        print("\n(add --out FILE.png for the plot)")
    return 0
