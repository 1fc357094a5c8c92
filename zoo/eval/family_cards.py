"""Family cards: what a built-in family is for, and its phenomenon measured across its seeds.

A card is a Markdown file beside the family's manifest (`manifests/FAMILY.card.md`) whose YAML
front matter says how to measure: the metrics to evaluate and the numbers to report. `zoo card
FAMILY` evaluates those metrics at every stored step, measures each number over the seeds with
zoo.stats (an event's step per seed with its interval, or a value at the last step with its
interval), and stores the result in the store (zoo/store/cards.py). `zoo show FAMILY` and the
Hugging Face export print the card with those numbers: every number on a card comes from that
command run on that store, none is typed by hand.

A measure in the front matter:
  {name, label, column,                      column of zoo.metrics(FAMILY), e.g. accuracy.test_acc
   event: threshold, threshold, direction?, persist?   -> the first step past it, per seed
   event: largest_jump, direction?                     -> the step of the jump that stands out
   event: settle, tolerance?, persist?                 -> the step from which it stays at its
                                                          final value (within tolerance)
   from_step: N?                                       -> the curve from step N on only (an event
                                                          after the first descent, say)
   curve: descent_rate?                                -> the event read on -d log(value) / d step
                                                          between stored steps instead: its largest
                                                          jump is where a descent speeds up (a
                                                          plateau ends); a smooth decay has none
   at: last                                            -> the value at each seed's last step
   at_event: NAME                                      -> the value at each seed's step of event NAME
   sizes: [SIZE, ...]?                                 -> only these sizes (default: every size)}

Optional front matter beside `evaluate` and `measures`:
  heldout: SOURCE        the held-out documents of loss / icl / neurons (default: derived from the
                         training source, zoo.eval.heldout)
  comparisons: [{name, label, a: SIZE, b: SIZE, metric, hypothesis, alternative?, paired?}]
                         B against A at the last shared step, zoo.compare's Multi-Bootstrap over
                         seeds and examples; `hypothesis` is written before the numbers exist and
                         the card says whether they support it, whichever way they come out.
A metric that does not fit a size (neurons on an attention-only model) is not evaluated there.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from zoo.eval.metrics import metric_fits
from zoo.store.cards import builtin_card_path, read_card, write_card_record
from zoo_common.errors import ZooError


def measure_card(family: str, *, store=None, card: str | Path | None = None,
                 progress: bool = True) -> dict:
    """Evaluate the card's metrics, measure its numbers over the seeds, store and return them.

    Only finished runs count: a run still training would enter with a shorter curve and its
    "last step" would not be the end. The record lists the runs left out."""
    from zoo.eval.evaluate import evaluate_family, family_runs
    from zoo.eval.tables import metrics_table
    from zoo.store.catalog import open_store

    store = open_store(store)
    source = read_card(card if card is not None else builtin_card_path(family))
    runs = family_runs(store, family)
    finished = [r for r in runs if store.run(r).status().get("finished")]
    unfinished = [r.key for r in runs if r not in finished]
    if not finished:
        raise ZooError(f"no run of {family} has finished training yet ({', '.join(unfinished)}); "
                       f"measure its card once some have")
    if source.evaluate:
        for size in sorted({r.size for r in finished}):
            mine = [r for r in finished if r.size == size]
            config = store.run(mine[0]).read_json("run.json")["hf_config"]
            metrics = [m for m in source.evaluate if metric_fits(m, config)]
            evaluate_family(family, metrics, store=store, sizes=[size], progress=progress,
                            seeds=sorted(r.seed for r in mine), heldout=source.heldout)
    table = metrics_table(family, store=store)
    results = []
    for size in sorted({r.size for r in finished}):
        seeds = [r.seed for r in finished if r.size == size]
        rows = table.filter(_equal(table, "size", size))
        rows = rows.filter(_is_in(rows, "seed", seeds))
        events: dict[str, dict] = {}
        for measure in source.measures:
            if measure.get("sizes") and size not in measure["sizes"]:
                continue
            result = _measure(measure, rows, events)
            results.append({"size": size, **result})
            if "event" in measure:
                events[measure["name"]] = result
    trained = {r.size for r in finished}
    comparisons = [_comparison(family, c, store, source.heldout, progress)
                   if {c["a"], c["b"]} <= trained else _not_measured(family, c, trained)
                   for c in source.comparisons]
    card_of = {c["name"]: c for c in source.comparisons}
    comparisons = [row if "why" not in row else _not_measured(family, card_of[row["name"]], trained,
                                                             why=row["why"])
                   for row in comparisons]
    record = {"format": 1, "family": family, "card": source.path.name, "comparisons": comparisons,
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "command": f"zoo card {family}", "store": store.url, "results": results,
              "unfinished": unfinished, "text": source.text}
    write_card_record(store, family, record)
    return record


def _not_measured(family: str, comparison: dict, trained: set, why: str | None = None) -> dict:
    """A comparison this store cannot make yet (its sizes not trained, or `why`): said so, with
    what would make it."""
    missing = [s for s in (comparison["a"], comparison["b"]) if s not in trained]
    only = " ".join(f"--only {s}" for s in missing)
    if why is None:
        why = (f"no finished run of {', '.join(f'{family}-{s}' for s in missing)} in this store "
               f"(`zoo train {family} {only}`, then `zoo card {family}`)")
    return {"name": comparison["name"], "label": comparison["label"],
            "metric": comparison["metric"], "hypothesis": comparison["hypothesis"],
            "alternative": comparison.get("alternative", "two-sided"), "a": comparison["a"],
            "b": comparison["b"], "at_step": None, "a_cell": "-", "b_cell": "-",
            "difference_cell": "-", "p_value": None, "supported": False,
            "test": f"not measured: {why}",
            "examples": ""}


def _comparison(family: str, comparison: dict, store, heldout: str | None, progress: bool) -> dict:
    """Size B against size A at the last shared step: zoo.compare's Multi-Bootstrap over seeds and
    examples (held-out samples for loss, each seed's neurons for neurons.*), in the card's words."""
    from zoo.config.names import arm_name
    from zoo.eval.comparison import compare

    alternative = comparison.get("alternative", "two-sided")
    if progress:
        print(f"card {family}: {comparison['name']} ({comparison['b']} against {comparison['a']})",
              flush=True)
    try:
        result = compare(arm_name(family, comparison["a"]), arm_name(family, comparison["b"]),
                         comparison["metric"], paired=comparison.get("paired", False), store=store,
                         alternative=alternative, heldout=heldout)
    except ZooError as exc:  # e.g. a paired comparison whose arms have other seeds so far
        return {"name": comparison["name"], "why": str(exc)}
    test = result.test

    def cell(mean, low, high):
        return f"{mean:.3g} [{low:.3g}, {high:.3g}]"

    from zoo.stats.multi_bootstrap import format_p

    if test is None:  # one seed: the point values, and no test
        a, b, difference = result.value_at(result.at_step)
        return {"name": comparison["name"], "label": comparison["label"],
                "metric": comparison["metric"], "hypothesis": comparison["hypothesis"],
                "alternative": alternative, "a": comparison["a"], "b": comparison["b"],
                "at_step": result.at_step, "a_cell": f"{a:.3g}", "b_cell": f"{b:.3g}",
                "difference_cell": f"{difference:.3g}", "p_value": None, "supported": False,
                "test": f"not tested at step {result.at_step}: {result.one_seed_note}",
                "examples": result.examples}

    supported = {"less": test.difference_high < 0, "greater": test.difference_low > 0,
                 "two-sided": test.difference_low > 0 or test.difference_high < 0}[alternative]
    words = (f"{format_p(test.p_value, test.n_resamples, alternative)}, step {result.at_step}, "
             f"{len(result.seeds_a)} + {len(result.seeds_b)} seeds x {result.examples}: "
             + ("the interval excludes 0 in the stated direction" if supported
                else "not supported: the interval includes 0 or lies the other way"))
    return {"name": comparison["name"], "label": comparison["label"], "metric": comparison["metric"],
            "hypothesis": comparison["hypothesis"], "alternative": alternative,
            "a": comparison["a"], "b": comparison["b"], "at_step": result.at_step,
            "a_cell": cell(test.mean_a, test.a_low, test.a_high),
            "b_cell": cell(test.mean_b, test.b_low, test.b_high),
            "difference_cell": cell(test.difference, test.difference_low, test.difference_high),
            "p_value": test.p_value, "supported": bool(supported), "test": words,
            "examples": result.examples}


def _equal(table, column, value):
    import pyarrow.compute as pc

    return pc.equal(table.column(column), value)


def _is_in(table, column, values):
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.is_in(table.column(column), value_set=pa.array(values, table.column(column).type))


def _curves(rows, column: str) -> tuple[list[int], list[int], np.ndarray]:
    """(seeds, steps, values [seeds, steps]) of one column on the steps where every seed has it."""
    if column not in rows.column_names:
        raise ZooError(f"zoo.metrics has no column {column!r}; columns: {', '.join(rows.column_names)}")
    seeds = sorted(set(rows.column("seed").to_pylist()))
    by_seed = {}
    for seed, step, value in zip(rows.column("seed").to_pylist(), rows.column("step").to_pylist(),
                                 rows.column(column).to_pylist()):
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            by_seed.setdefault(seed, {})[step] = value
    if len(by_seed) < len(seeds):
        missing = [s for s in seeds if s not in by_seed]
        raise ZooError(f"{column}: seed(s) {missing} have no values; evaluate them first")
    steps = sorted(set.intersection(*(set(v) for v in by_seed.values())))
    return seeds, steps, np.array([[by_seed[s][t] for t in steps] for s in seeds], dtype=float)


def _descent_rate(steps: list[int], values: np.ndarray, column: str) -> tuple[list[int], np.ndarray]:
    """-d log(value) / d step between consecutive stored steps, at the later step of each pair."""
    if (values <= 0).any():
        raise ZooError(f"{column}: a descent rate reads log(value), and some values are <= 0")
    rate = -np.diff(np.log(values), axis=1) / np.diff(np.asarray(steps, dtype=float))
    return steps[1:], rate


def _resolution(steps: list[int], event_steps) -> list[int | None]:
    """Per seed, how many steps before its event the previous evaluated step lies: the event
    happened somewhere in that gap, which no interval over seeds can see."""
    return [None if s is None or steps.index(s) == 0 else s - steps[steps.index(s) - 1]
            for s in event_steps]


def _resolution_words(resolution: list[int | None]) -> str:
    """'; on a 100-step grid (each seed's event lies in the 100 steps up to it)'."""
    gaps = sorted({g for g in resolution if g is not None})
    if not gaps or gaps == [1]:
        return ""
    grid = f"{gaps[0]}-step" if len(gaps) == 1 else f"{gaps[0]}- to {gaps[-1]}-step"
    return f"; on a {grid} grid (each seed's event lies in the gap up to its step)"


def _measure(measure: dict, rows, events: dict) -> dict:
    from zoo.stats import event_timing, seed_interval

    seeds, steps, values = _curves(rows, measure["column"])
    if "from_step" in measure:
        keep = [i for i, step in enumerate(steps) if step >= measure["from_step"]]
        steps, values = [steps[i] for i in keep], values[:, keep]
    if measure.get("curve") == "descent_rate":
        steps, values = _descent_rate(steps, values, measure["column"])
    out = {"name": measure["name"], "label": measure["label"], "column": measure["column"],
           "seeds": seeds}
    if "event" in measure:
        timing = event_timing(steps, values, seeds=seeds, kind=measure["event"],
                              threshold=measure.get("threshold"),
                              direction=measure.get("direction", "above"),
                              persist=measure.get("persist", 1),
                              tolerance=measure.get("tolerance", 0.0), no_event="nan")
        out["steps"] = list(timing.event_steps)
        out["per_seed"] = ", ".join("none" if s is None else str(s) for s in timing.event_steps)
        out["resolution"] = _resolution(steps, timing.event_steps)
        if timing.n_events >= 2:
            out["summary"] = (f"step {timing.mean:.0f} [{timing.mean_low:.0f}, {timing.mean_high:.0f}] "
                              f"({timing.confidence:.0%} {timing.method} interval, {timing.n_events} of "
                              f"{len(seeds)} seeds){_resolution_words(out['resolution'])}")
        else:
            out["summary"] = (f"event in {timing.n_events} of {len(seeds)} seeds: no interval"
                              f"{_resolution_words(out['resolution'])}")
        return out
    if "at" in measure:
        picked = values[:, -1]
        where = f"at step {steps[-1]}"
    else:
        event_steps = events[measure["at_event"]]["steps"]
        picked = np.array([np.nan if s is None or s not in steps else values[i, steps.index(s)]
                           for i, s in enumerate(event_steps)])
        where = f"at {measure['at_event']}"
    out["values"] = [None if math.isnan(v) else float(v) for v in picked]
    out["per_seed"] = ", ".join("n/a" if math.isnan(v) else f"{v:.3g}" for v in picked)
    finite = picked[~np.isnan(picked)]
    if len(finite) >= 2:
        interval = seed_interval(finite)
        out["summary"] = (f"{where}: mean {interval.mean:.3g} [{interval.low:.3g}, {interval.high:.3g}], "
                          f"min {finite.min():.3g} ({len(finite)} seeds)")
    else:
        out["summary"] = f"{where}: {len(finite)} seed(s) with a value: no interval"
    return out
