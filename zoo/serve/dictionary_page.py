"""The dictionary pages: a run's dictionaries (sparse autoencoders), and what one feature is.

    /dictionaries/NAME/SEED                         every dictionary beside the run, its quality,
                                                    and per site its features alive / born / gone
    /dictionary/NAME/SEED/RECORD                    one dictionary: its record and quality, the
                                                    density of its features, its features by
                                                    density (PER_PAGE a page: ?page=P)
    /dictionary/NAME/SEED/RECORD?feature=F          ... and feature F: its top contexts (the text
                                                    with the token marked, sample, document, the
                                                    steps that trained on it), density, logit
                                                    effect and lineage across steps

What a feature is comes from zoo.dictionaries.feature_view; a feature's first page gathers the
dictionary's activations again (seconds), the others of the same dictionary are read from memory.
"""
from __future__ import annotations

from zoo.dictionaries.dictionary_runs import list_run_dicts
from zoo.dictionaries.feature_view import (
    describe_feature,
    find_dictionary,
    lineage_dictionaries,
    lineage_table,
)
from zoo.dictionaries.lineage import per_step_counts
from zoo.serve.charts import Chart, Series, histogram, svg
from zoo.serve.pages import (
    WEIGHTS_READY,
    Page,
    dictionary_href,
    is_superposition,
    run_href,
    superposition_href,
)
from zoo.store.catalog import open_run
from zoo_common.errors import ArgumentError

PER_PAGE = 50  # features listed per page
STEPS_SHOWN = 12  # of the steps that trained on a context's sample
QUALITY = (("variance_explained", "variance explained"), ("l0", "L0"),
           ("dead_fraction", "dead"), ("dense_fraction", "dense (>10%)"),
           ("loss_recovered", "loss recovered"), ("loss_clean", "loss clean"),
           ("loss_spliced", "loss spliced"), ("loss_zero_ablated", "loss zero-ablated"),
           ("ground_truth_mmcs", "ground truth (mmcs)"))


def _step_href(name: str, seed: int, step: int, superposition: bool) -> str:
    return superposition_href(name, seed, step) if superposition else run_href(name, seed, step)


def _shape(record: dict) -> str:
    config = record["config"]
    return f"{config['kind']}{config['width']}" + (f", k={config['k']}" if "k" in config else
                                                   f", l1={config.get('l1')}")


def _data(record: dict) -> str:
    data = record["data"]
    return "held-out" if data["source"] == "heldout" else f"steps {data['steps'][0]}..{data['steps'][1]}"


def _summary(record: dict) -> dict:
    quality = record.get("quality", {})
    return {"name": record["name"], "step": record["step"], "site": record["site"],
            "shape": _shape(record), "data": _data(record), "warm_start": record.get("warm_start"),
            **{key: quality.get(key) for key, _ in QUALITY}}


def dictionaries_page(store, name: str, seed: int) -> Page:
    run = open_run(name, seed=seed, store=store)
    superposition = is_superposition(run)
    records = list_run_dicts(run)
    steps = {r["name"]: r["step"] for r in records}
    series: dict[tuple, list[dict]] = {}
    for record in records:
        series.setdefault((record["site"], record["config"]["kind"], record["config"]["width"]),
                          []).append(record)
    lineages = []
    for (site, kind, width), members in series.items():
        chosen = lineage_dictionaries(run, members[-1])
        if len(chosen) < 2:
            continue
        counts = per_step_counts(lineage_table(run, chosen))
        chart = Chart(f"{site} ({kind}{width}): features alive, born and gone per step",
                      "features")
        for key, colour in (("alive", "#1f77b4"), ("born", "#2ca02c"), ("gone", "#d62728")):
            chart.series.append(Series(key, [c["step"] for c in counts],
                                       [c[key] for c in counts], colour, width=2))
        lineages.append({"site": site, "shape": f"{kind}{width}", "counts": counts,  # a line
                         "chart": svg(chart, width=760, height=260) if len(counts) > 2 else ""})
    return Page("dictionaries.html", f"{name} seed {seed}: dictionaries",
                {"name": name, "seed": seed, "superposition": superposition,
                 "dictionaries": [{**_summary(r), "warm_step": steps.get(r.get("warm_start"))}
                                  for r in records], "quality": QUALITY,
                 "lineages": lineages})


def dictionary_page(store, name: str, seed: int, record_name: str, feature: int | None = None,
                    page: int | None = None, *,
                    weights_ready: WEIGHTS_READY | None = None) -> Page:
    run = open_run(name, seed=seed, store=store)
    superposition = is_superposition(run)
    dictionary = find_dictionary(run, record_name)
    record = dictionary.record
    if feature is not None and weights_ready is not None:  # a feature reads the model's weights
        weights_ready(run, record["step"])
    density = dictionary.density.tolist()
    rows = int(record.get("training", {}).get("rows", 0))
    order = sorted(range(len(density)), key=lambda f: (-density[f], f))
    pages = max(1, -(-len(order) // PER_PAGE))
    view = None if feature is None else describe_feature(run, record_name, feature)
    if page is None:
        page = order.index(view.feature) // PER_PAGE if view else 0
    if not 0 <= page < pages:
        raise ArgumentError(f"page {page} is out of range: {len(order)} features make pages "
                            f"0..{pages - 1} of {PER_PAGE}")
    listed = [{"rank": rank, "feature": f, "density": density[f], "rows": round(density[f] * rows)}
              for rank, f in enumerate(order) if page * PER_PAGE <= rank < (page + 1) * PER_PAGE]
    facts = {"summary": _summary(record), "module": record["module"], "capture": record["capture"],
             "d_in": record["d_in"], "weights": record["weights"].get("kind"),
             "training": record.get("training", {}), "dead": sum(d == 0 for d in density),
             "data_steps": record["data"].get("steps")}
    values = {"name": name, "seed": seed, "record": record_name, "superposition": superposition,
              "step_href": _step_href(name, seed, record["step"], superposition), "facts": facts,
              "quality": [(label, record.get("quality", {}).get(key)) for key, label in QUALITY
                          if key in record.get("quality", {})],
              "histogram": histogram(density, title=f"feature density ({len(density)} features)",
                                     x_label="share of the rows a feature is active on (log)"),
              "features": listed, "page": page, "pages": pages, "per_page": PER_PAGE,
              "view": None if view is None else _feature(name, seed, view, superposition)}
    title = f"{name} seed {seed}: dictionary at step {record['step']:,} on {record['site']}"
    return Page("dictionary.html", title, values)


def _feature(name: str, seed: int, view, superposition: bool) -> dict:
    """The chosen feature, as the template lays it out (links made here)."""
    contexts = []
    for c in view.contexts:
        steps = list(c.steps_of or ())
        contexts.append({"activation": c.activation, "sample": c.sample, "position": c.position,
                         "document": c.document, "before": c.before, "token": c.token,
                         "after": c.after, "features": c.features, "step": c.step,
                         "step_href": _step_href(name, seed, c.step, superposition),
                         "sample_href": None if superposition or c.sample < 0 else
                         f"{run_href(name, seed, c.step)}?sample={c.sample}",
                         "steps_of": [(s, run_href(name, seed, s)) for s in steps[:STEPS_SHOWN]],
                         "more_steps": max(0, len(steps) - STEPS_SHOWN)})
    effect = None
    if view.logit_effect is not None:
        e = view.logit_effect
        scale = max(float(e.values.abs().max()), 1e-30)

        def rows(entries):
            return [{"id": i, "label": label, "value": v, "bar": 120 * abs(v) / scale}
                    for i, label, v in entries]

        every = sorted(range(len(e.values)), key=lambda i: -float(e.values[i]))
        effect = {"space": e.space, "how": e.how, "top": rows(e.top), "bottom": rows(e.bottom),
                  "all": rows([(i, f"feature {i}", float(e.values[i])) for i in every])
                  if superposition else None}
    lineage = None
    if view.lineage is not None:
        line = view.lineage
        chart = Chart(f"feature {view.feature}'s lineage: its density at each step (dashed: "
                      f"this dictionary's step)", "density", lines=[(view.step, "")])
        chart.series.append(Series(f"lineage {line.lineage}", [p.step for p in line.points],
                                   [p.density for p in line.points], "#1f77b4", width=2))
        lineage = {"lineage": line.lineage, "born": line.born, "gone": line.gone,
                   "threshold": line.threshold, "tracked": len(line.steps),
                   "first": line.steps[0], "last": line.steps[-1],
                   "points": [{"step": p.step, "feature": p.feature, "cosine": p.cosine,
                               "density": p.density, "here": p.step == view.step,
                               "href": dictionary_href(name, seed, p.dictionary, p.feature)}
                              for p in line.points],
                   "chart": svg(chart, width=760, height=240) if len(line.points) > 2 else ""}
    return {"feature": view.feature, "width": view.width, "density": view.density,
            "fires_on": view.fires_on, "rows": view.rows, "reproduced": view.reproduced,
            "contexts": contexts, "effect": effect, "lineage": lineage,
            "lineage_note": view.lineage_note}
