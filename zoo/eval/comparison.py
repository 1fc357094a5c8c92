"""Compare two models (or one-size families) on one metric across seeds and steps.

    result = compare("toy-gelu2l", "toy-solu2l", "induction.max", paired=False, store=...)
    print(result.format()); plot_comparison(result, "cmp.png")

Per step shared by both arms: mean and interval over seeds of each arm (zoo.stats seed_intervals;
a t interval by default) and the difference B - A with its interval (the Multi-Bootstrap over
seeds). At the final shared step (or `step=`): the Multi-Bootstrap of MultiBERTs with the p-value
of the hypothesis `alternative` names, two-sided by default (a loss is better lower, an induction
score higher: a fixed one-sided direction would answer the wrong question for one of them); the
printed result says in words which hypothesis that is and, for a metric with a known direction,
which sign favours B. For `neurons.*` the examples are each seed's MLP neurons (resampled
independently in the two arms). For `loss` the examples are the held-out samples (zoo.per_example: each
seed's checkpoint is reloaded to score them one by one), so seeds and examples are resampled
jointly (when the table's losses were measured on that default held-out set; losses from other sets
fall back to seeds, and one model's seeds measured on different sets are refused); other metrics
have one number per seed and step, so only seeds are resampled there (said in `examples`).

With one seed in an arm there is no interval over seeds (it measures seed-to-seed variation): the
comparison then holds the point values (each arm's value, its mean where the other arm has
several seeds, and B - A, per step and at the final step), `test` is None, and the printed result
and the plot say in words that no interval exists with one seed.

paired=True says the same seeds trained both arms (e.g. the same init/data seeds with another
activation); the seed sets must then match, and a mismatch names the seeds on each side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from zoo_common.errors import ZooError
from zoo.eval.metrics import METRICS
from zoo.eval.evaluate import family_runs
from zoo.eval.example_scores import PER_EXAMPLE_METRICS, per_example
from zoo.config.names import arm_name, parse_arm, split_branch
from zoo.stats import MultiBootstrapResult, multi_bootstrap, seed_intervals
from zoo.stats.multi_bootstrap import check_alternative, format_p
from zoo.stats.seed_intervals import few_seeds_note
from zoo.store.store import Store
from zoo.eval.tables import metrics_table

# Metrics whose better direction is known; the output says which sign of B - A favours B.
LOWER_IS_BETTER = ("loss", "train_loss")
_INTERVAL_WORDS = {"t": "t interval", "percentile": "percentile bootstrap interval",
                   "bca": "BCa bootstrap interval"}


@dataclass(frozen=True, eq=False)
class Comparison:
    """Per-step summary (`per_step`), per-seed curves (`curves`) and the test at `at_step`."""

    a: str
    b: str
    metric: str
    paired: bool
    per_step: pa.Table  # step, a_mean, a_low, a_high, b_mean, b_low, b_high, difference(_low/_high)
    curves: pa.Table  # arm ("a"/"b"), seed, step, value
    at_step: int
    test: MultiBootstrapResult | None  # None with one seed in an arm: no interval, no p-value
    examples: str
    seeds_a: tuple[int, ...]
    seeds_b: tuple[int, ...]
    interval_method: str = "t"  # of the per-step A and B intervals (see zoo.stats.seed_interval)
    branch_points: tuple[int, ...] = ()  # where a branch arm (name@label) left its parent
    confidence: float = 0.95

    @property
    def has_intervals(self) -> bool:
        """False when an arm has one seed: then the numbers are point values, with no interval."""
        return self.test is not None

    @property
    def one_seed_note(self) -> str:
        """Why a comparison with one seed has no interval, in words ("" when it has intervals)."""
        if self.has_intervals:
            return ""
        single = " and ".join(f"{arm} = {name} (seed {seeds[0]})" for arm, name, seeds in
                              (("A", self.a, self.seeds_a), ("B", self.b, self.seeds_b))
                              if len(seeds) < 2)
        return (f"one seed in {single}: no interval exists with one seed (an interval over seeds "
                f"measures seed-to-seed variation, which one run cannot show), so these are point "
                f"values, with no interval and no p-value; train more seeds for an interval")

    def value_at(self, step: int) -> tuple[float, float, float]:
        """(A, B, B - A) at `step`: the means over each arm's seeds (a one-seed arm: its value)."""
        t = self.per_step.to_pydict()
        if step not in t["step"]:
            raise ZooError(f"step {step} is not shared by {self.a} and {self.b}; shared steps: "
                           f"{t['step']}")
        i = t["step"].index(step)
        return t["a_mean"][i], t["b_mean"][i], t["difference"][i]

    def format(self) -> str:
        """The per-step table and the test, as printed by `zoo compare`."""
        if not self.has_intervals:
            return self._format_points()
        conf = f"{self.test.confidence:.0%}"
        rows = [
            (
                f"{self.metric}: A = {self.a} (seeds {_seeds(self.seeds_a)}), B = {self.b} (seeds "
                f"{_seeds(self.seeds_b)}); A, B: mean over seeds [{conf} "
                f"{_INTERVAL_WORDS[self.interval_method]}]; B - A: difference of the means "
                f"[{conf} Multi-Bootstrap interval]"
            )
        ]
        header = f"{'step':>8}  {'A':>30}  {'B':>30}  {'B - A':>30}"
        if self.branch_points:
            rows.append(f"branch point: step {', '.join(map(str, self.branch_points))} (B starts "
                        f"from A's exact state there: B - A is 0 at that step by construction)")
        rows += [header, "-" * len(header)]
        t = self.per_step.to_pydict()
        for i, step in enumerate(t["step"]):
            cells = [
                _cell(t[mean][i], t[f"{k}_low"][i], t[f"{k}_high"][i])
                for k, mean in (("a", "a_mean"), ("b", "b_mean"), ("difference", "difference"))
            ]
            rows.append(f"{step:>8}  {cells[0]:>30}  {cells[1]:>30}  {cells[2]:>30}")
        r = self.test
        rows += [
            "",
            (
                f"Multi-Bootstrap at step {self.at_step} ({'paired' if self.paired else 'unpaired'}; "
                f"{r.n_seeds_a} + {r.n_seeds_b} seeds x {self.examples}; {r.n_resamples} resamples):"
            ),
            f"  A {_cell(r.mean_a, r.a_low, r.a_high)}   B {_cell(r.mean_b, r.b_low, r.b_high)}",
            (
                f"  B - A {_cell(r.difference, r.difference_low, r.difference_high)}   "
                f"{format_p(r.p_value, r.n_resamples, r.alternative)}"
            ),
        ]
        if self.metric in LOWER_IS_BETTER:
            rows.append(f"  {self.metric}: lower is better, so B - A < 0 favours B ({self.b})")
        fewest = min(min(t["a_seeds"]), min(t["b_seeds"]))
        notes = [few_seeds_note(fewest, self.interval_method), r.note]
        rows += [f"  note: {note}" for note in notes if note]
        return "\n".join(rows)


    def _format_points(self) -> str:
        """One seed in an arm: the point values per step and at the final step, and why there is
        no interval."""
        def arm(seeds):
            return f"seed {seeds[0]}" if len(seeds) == 1 else f"mean of seeds {_seeds(seeds)}"

        rows = [f"{self.metric}: A = {self.a} ({arm(self.seeds_a)}), B = {self.b} "
                f"({arm(self.seeds_b)}); point values, no interval (one seed)"]
        if self.branch_points:
            rows.append(f"branch point: step {', '.join(map(str, self.branch_points))} (B starts "
                        f"from A's exact state there: B - A is 0 at that step by construction)")
        header = f"{'step':>8}  {'A':>14}  {'B':>14}  {'B - A':>14}"
        rows += [header, "-" * len(header)]
        t = self.per_step.to_pydict()
        for step, a, b, d in zip(t["step"], t["a_mean"], t["b_mean"], t["difference"]):
            rows.append(f"{step:>8}  {a:>14.6g}  {b:>14.6g}  {d:>14.6g}")
        a, b, d = self.value_at(self.at_step)
        rows += ["", f"at step {self.at_step} (one seed: no interval, no test):",
                 f"  A {a:.6g}   B {b:.6g}   B - A {d:.6g}"]
        if self.metric in LOWER_IS_BETTER:
            rows.append(f"  {self.metric}: lower is better, so B - A < 0 favours B ({self.b})")
        rows.append(f"  note: {self.one_seed_note}")
        return "\n".join(rows)


def _seeds(seeds) -> str:
    return ", ".join(map(str, seeds))


def _cell(mean, low, high) -> str:
    return f"{mean:.4g} [{low:.4g}, {high:.4g}]"


def resolve_arm(name: str, store: Store) -> tuple[str, str]:
    """A family with one size, or a model name `<family>-<size>` -> (family, size); either with
    `@label` for a branch of it (zoo branch): (family@label, size)."""
    base, label = split_branch(name)
    families = {r.family for r in store.runs() if r.branch == label}
    if base in families:
        sizes = sorted({r.size for r in store.runs() if r.family == base and r.branch == label})
        if len(sizes) == 1:
            return name, sizes[0]
        raise ZooError(
            f"family {name} has {len(sizes)} sizes; compare one model: "
            f"{', '.join(arm_name(name, s) for s in sizes)}"
        )
    family, size = parse_arm(name)
    family_runs(store, family, sizes=[size])
    return family, size


def arm_values(family: str, size: str, metric: str, store: Store) -> pa.Table:
    """(seed, step, value) rows where `metric` was evaluated / logged, for one model."""
    table = metrics_table(family, store=store, sizes=[size])
    if metric not in table.column_names:
        fields = [c for c in table.column_names if c.startswith(metric + ".")]
        if fields:
            raise ZooError(
                f"{metric} has one value per field; choose one column: {', '.join(fields)}"
            )
        evaluated = [c for c in table.column_names if c not in ("family", "size", "seed", "step")]
        hint = f"; run `zoo eval {family} --metric {metric}` first" if metric in METRICS else ""
        raise ZooError(
            f"no column {metric!r} for {arm_name(family, size)}{hint}; columns: {', '.join(evaluated)}"
        )
    table = table.filter(pc.is_valid(table.column(metric)))
    return table.select(["seed", "step", metric]).rename_columns(["seed", "step", "value"])


def _check_paired(a: str, b: str, seeds_a: list, seeds_b: list) -> None:
    only_a = sorted(set(seeds_a) - set(seeds_b))
    only_b = sorted(set(seeds_b) - set(seeds_a))
    if only_a or only_b:
        raise ZooError(
            f"paired comparison needs the same seeds in both arms: seeds only in {a}: "
            f"{only_a or 'none'}, only in {b}: {only_b or 'none'}; train the missing seeds, or "
            "compare unpaired (drop --paired / paired=False)"
        )


def _matrix(rows: pa.Table, step: int) -> tuple[list[int], np.ndarray]:
    at = rows.filter(pc.equal(rows.column("step"), step)).sort_by("seed")
    return at.column("seed").to_pylist(), at.column("value").to_numpy(zero_copy_only=False)


def _stored_heldout_sets(family: str, size: str, step: int, store: Store, name: str,
                         metric: str = "loss") -> set[str]:
    """Fingerprints of the held-out sets the stored rows of held-out `metric` (loss, neurons) of a
    model at `step` were measured on; one mean over seeds of values from different sets would mean
    nothing, so that is refused."""
    from zoo.eval.results import ResultsLog

    table = ResultsLog(store, family).read()
    sets = {heldout for s, st, row_metric, heldout in zip(
        *(table.column(c).to_pylist() for c in ("size", "step", "metric", "heldout")))
        if s == size and st == step and row_metric == metric}
    if len(sets) > 1:
        raise ZooError(
            f"{name}: its seeds' losses at step {step} were measured on {len(sets)} different "
            f"held-out sets (zoo eval with different --heldout / --heldout-samples); evaluate all "
            f"seeds with one setting first"
        )
    return sets


def compare(
    a: str,
    b: str,
    metric: str,
    *,
    paired: bool = False,
    step: int | None = None,
    store: str | Store | None = None,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    rng_seed: int = 0,
    alternative: str = "two-sided",
    method: str = "t",
    heldout: str | None = None,
) -> Comparison:
    """Compare model / family `a` with `b` on `metric` (a column of zoo.metrics, e.g. loss).

    alternative: the hypothesis of the test, "two-sided" (B - A = 0), "less" (is B lower?) or
    "greater" (is B higher?). method: the per-step interval of each arm (see seed_interval).
    heldout: the held-out source the table's loss / neurons rows were measured on (as given to
    zoo eval / the card), so the final test re-scores the same examples.
    """
    from zoo.store.catalog import open_store

    check_alternative(alternative)
    store = open_store(store)
    arms = {"a": resolve_arm(a, store), "b": resolve_arm(b, store)}
    values = {k: arm_values(*arm, metric, store) for k, arm in arms.items()}
    seeds = {k: sorted(set(v.column("seed").to_pylist())) for k, v in values.items()}
    if paired:
        _check_paired(a, b, seeds["a"], seeds["b"])
    steps = sorted(
        set(values["a"].column("step").to_pylist()) & set(values["b"].column("step").to_pylist())
    )
    if not steps:
        raise ZooError(f"{a} and {b} share no step with {metric} values; evaluate both first")
    values = {
        k: v.filter(pc.is_in(v.column("step"), value_set=pa.array(steps)))
        for k, v in values.items()
    }
    options = {"confidence": confidence, "n_resamples": n_resamples, "rng_seed": rng_seed}
    names = {"a": arm_name(*arms["a"]), "b": arm_name(*arms["b"])}  # the one spelling of a name
    at_step = steps[-1] if step is None else step
    if at_step not in steps:
        raise ZooError(f"step {at_step} is not shared by {a} and {b}; shared steps: {steps}")
    if min(len(seeds["a"]), len(seeds["b"])) < 2:  # no interval over one seed: point values
        from zoo.stats._inputs import check_options

        check_options(**options, method=method)
        return Comparison(names["a"], names["b"], metric, paired, _point_table(values, steps),
                          _curves(values), at_step, None, "one seed: point values",
                          tuple(seeds["a"]), tuple(seeds["b"]), method,
                          _branch_points(store, arms.values()), confidence)
    intervals = {}
    for k, name in (("a", a), ("b", b)):
        try:
            intervals[k] = seed_intervals(values[k], method=method, **options)
        except ZooError as error:
            raise ZooError(f"{name}: {error}") from None
    differences = []
    for s in steps:
        (sa, va), (sb, vb) = _matrix(values["a"], s), _matrix(values["b"], s)
        if paired:
            _check_paired(f"{a} at step {s}", f"{b} at step {s}", sa, sb)
        differences.append(
            multi_bootstrap(
                va[:, None], vb[:, None], paired=paired, seeds_a=sa, seeds_b=sb,
                alternative=alternative, **options
            )
        )
    test, examples = differences[steps.index(at_step)], "1 value per seed (seeds resampled)"
    if metric in PER_EXAMPLE_METRICS:
        test, examples = _examples_test(arms, (a, b), values, at_step, metric, test, examples,
                                        paired=paired, heldout=heldout, store=store,
                                        alternative=alternative, options=options)
    ia, ib = intervals["a"], intervals["b"]
    per_step = pa.table(
        {
            "step": pa.array(steps, pa.int64()),
            "a_mean": ia.means,
            "a_low": ia.lows,
            "a_high": ia.highs,
            "a_seeds": ia.n_seeds,
            "b_mean": ib.means,
            "b_low": ib.lows,
            "b_high": ib.highs,
            "b_seeds": ib.n_seeds,
            "difference": [d.difference for d in differences],
            "difference_low": [d.difference_low for d in differences],
            "difference_high": [d.difference_high for d in differences],
        }
    )
    return Comparison(
        names["a"],
        names["b"],
        metric,
        paired,
        per_step,
        _curves(values),
        at_step,
        test,
        examples,
        tuple(seeds["a"]),
        tuple(seeds["b"]),
        method,
        _branch_points(store, arms.values()),
        confidence,
    )


def _curves(values: dict) -> pa.Table:
    return pa.concat_tables(
        [v.append_column("arm", pa.array([k] * v.num_rows, pa.string())) for k, v in values.items()]
    )


def _point_table(values: dict, steps: list[int]) -> pa.Table:
    """per_step without intervals (an arm with one seed): each arm's value (its mean over seeds
    where it has several) and B - A; the interval columns are NaN, as no interval exists."""
    columns: dict[str, list] = {"step": steps}
    for k in ("a", "b"):
        means, counts = [], []
        for s in steps:
            _, v = _matrix(values[k], s)
            means.append(float(np.mean(v)))
            counts.append(len(v))
        columns.update({f"{k}_mean": means, f"{k}_low": [np.nan] * len(steps),
                        f"{k}_high": [np.nan] * len(steps), f"{k}_seeds": counts})
    columns["difference"] = [b - a for a, b in zip(columns["a_mean"], columns["b_mean"])]
    columns["difference_low"] = columns["difference_high"] = [np.nan] * len(steps)
    return pa.table({**columns, "step": pa.array(steps, pa.int64()),
                     "a_seeds": pa.array(columns["a_seeds"], pa.int64()),
                     "b_seeds": pa.array(columns["b_seeds"], pa.int64())})


def _examples_test(arms, names, values, at_step, metric, test, examples, *, paired, heldout, store,
                   alternative, options):
    """The final test over seeds AND examples (held-out samples, or neurons), when the table's
    values were measured on the held-out set re-scored here; else the seeds-only test stands."""
    base = metric.split(".")[0]
    (sa, _), (sb, _) = _matrix(values["a"], at_step), _matrix(values["b"], at_step)
    stored = {k: _stored_heldout_sets(*arms[k], at_step, store, name, base)
              for k, name in zip(("a", "b"), names)}
    scores_a = per_example(arm_name(*arms["a"]), metric=metric, step=at_step, seeds=sa, store=store,
                           heldout=heldout)
    scores_b = per_example(arm_name(*arms["b"]), metric=metric, step=at_step, seeds=sb, store=store,
                           heldout=heldout)
    ma, fa, mb, fb = scores_a.values, scores_a.heldout, scores_b.values, scores_b.heldout
    if fa != fb or not (stored["a"] <= {fa} and stored["b"] <= {fa}):
        if fa == fb:
            examples += (f"; the table's {base} was measured on another held-out set than the one "
                         "re-scored here, so its examples were not resampled")
        return test, examples
    if scores_a.unit == "neuron":
        if ma.shape[1] != mb.shape[1]:
            return test, examples + (f"; the arms have {ma.shape[1]} and {mb.shape[1]} neurons, "
                                     "so neurons were not resampled")
        # neuron j of A and of B are not the same unit: shuffle B's so a shared resample of
        # column indices draws independent neurons in the two arms
        mb = mb[:, np.random.default_rng(options["rng_seed"] + 1).permutation(mb.shape[1])]
    test = multi_bootstrap(ma, mb, paired=paired, seeds_a=sa, seeds_b=sb, alternative=alternative,
                           **options)
    unit = "held-out examples" if scores_a.unit != "neuron" else "neurons per seed"
    return test, f"{ma.shape[1]} {unit}"


def _branch_points(store: Store, arms) -> tuple[int, ...]:
    """The from-steps of every branch arm's runs (one per branch family made with --seed all)."""
    from zoo.store.lineage import branch_record

    points = set()
    for family, size in arms:
        if "@" in family:
            for run_id in family_runs(store, family, sizes=[size]):
                points.add(branch_record(store.run(run_id))["from_step"])
    return tuple(sorted(points))
