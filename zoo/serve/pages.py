"""The pages of `zoo serve`: what each page shows, gathered from the store, as a Page.

A Page names a Jinja2 template of templates/ and holds its values; app.py renders it through
Starlette's Jinja2Templates, which escapes every value (autoescape), so text from the store or
the request (names, labels, documents, prompts) is never markup. Charts are inline SVG from
charts.py (escaped by markupsafe). A ZooError (an unknown model, seed or step: its message lists
what exists) becomes the 404 page in app.py.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote

import jinja2
import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from zoo.attribution.stored import stored_attributions
from zoo.serve.charts import PALETTE, Chart, Series, heatmap, svg
from zoo.store.catalog import list_models, open_run
from zoo.store.run_store import RunStore

if TYPE_CHECKING:
    from zoo.serve.shared_replays import Replay

# Called with (run, step) just before a page reads that step's weights: zoo serve's shared
# replays (shared_replays.py) raise Replaying there while a step that was not stored is replayed.
WEIGHTS_READY = Callable[[RunStore, int], None]


@dataclass(frozen=True)
class Page:
    """A page to render: the template's file name and the values it shows."""

    template: str
    title: str
    values: dict = field(default_factory=dict)


def model_href(name: str) -> str:
    return f"/model/{quote(name)}"


def run_href(name: str, seed: int, step: int) -> str:
    return f"/run/{quote(name)}/{seed}/{step}"


def attention_href(name: str, seed: int, step: int) -> str:
    return f"/attention/{quote(name)}/{seed}?step={step}"


def superposition_href(name: str, seed: int, step: int) -> str:
    return f"/superposition/{quote(name)}/{seed}?step={step}"


def dictionaries_href(name: str, seed: int) -> str:
    return f"/dictionaries/{quote(name)}/{seed}"


def dictionary_href(name: str, seed: int, record_name: str, feature: int | None = None) -> str:
    href = f"/dictionary/{quote(name)}/{seed}/{quote(record_name)}"
    return href if feature is None else f"{href}?feature={feature}#feature"


def attributions_href(name: str, seed: int) -> str:
    return f"/attributions/{quote(name)}/{seed}"


def attribution_href(name: str, seed: int, key: str) -> str:
    return f"/attribution/{quote(name)}/{seed}/{quote(key)}"


REFRESH_S = 2  # how often the page of a step being replayed reloads itself


def visible(text: str) -> str:
    """A token's text with its newlines and tabs drawn (⏎, →), so a context stays one line."""
    return text.replace("\n", "\u23ce").replace("\t", "\u2192")


_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("zoo.serve", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,  # a value a template names but no page gives is an error
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENVIRONMENT.globals.update(model_href=model_href, run_href=run_href,
                            attention_href=attention_href, superposition_href=superposition_href,
                            dictionaries_href=dictionaries_href, dictionary_href=dictionary_href,
                            attributions_href=attributions_href, attribution_href=attribution_href)
_ENVIRONMENT.filters["thousands"] = lambda n: f"{n:,}"
_ENVIRONMENT.filters["visible"] = visible
TEMPLATES = Jinja2Templates(env=_ENVIRONMENT)


def render(request: Request, page: Page, *, status_code: int = 200) -> Response:
    """The page as an HTML response (Jinja2, autoescaped)."""
    return TEMPLATES.TemplateResponse(request, page.template,
                                      {"title": page.title, **page.values},
                                      status_code=status_code)


def _state(run) -> str:
    status = run.status()
    if status.get("finished"):
        return "finished"
    last, total = status.get("last_step", 0), status.get("total_steps", "?")
    busy = "training" if run.location.exists("lock.json") else "stopped"
    return f"{busy}: step {last:,} of {total:,}" if isinstance(total, int) else f"{busy}: step {last}"


def _metrics(family: str, store, size: str):
    from zoo.eval.tables import metrics_table

    table = metrics_table(family, store=store, sizes=[size]).to_pandas()
    return table[table["size"] == size]


def _mean_curve(rows, column: str):
    """Steps, means and a 95% t interval over the seeds that have the value at that step."""
    from zoo.stats import seed_interval

    steps, means, lows, highs = [], [], [], []
    for step, group in rows[rows[column].notna()].groupby("step"):
        values = group[column].to_numpy(dtype=float)
        steps.append(int(step))
        means.append(float(values.mean()))
        if len(values) >= 2 and np.isfinite(values).all():
            interval = seed_interval(values)
            lows.append(interval.low)
            highs.append(interval.high)
        else:
            lows.append(None)
            highs.append(None)
    return steps, means, lows, highs


def store_page(store) -> Page:
    models = list_models(store=store)
    rows, chart = [], Chart("training loss, mean over seeds", "train loss (the step's batch)")
    for k, model in enumerate(models):
        runs = [store.run(r) for r in store.runs() if r.model_name == model.name and not r.branch]
        steps = [s for seed_steps in model.steps.values() for s in seed_steps]
        rows.append({"name": model.name, "family": model.family, "seeds": model.seeds,
                     "last_step": max(steps), "stored": len(next(iter(model.steps.values()))),
                     "states": sorted({_state(run) for run in runs}),
                     "branches": list(model.branches)})
        table = _metrics(model.family, store, model.size)
        steps_, means, _, _ = _mean_curve(table, "train_loss")
        chart.series.append(Series(model.name, steps_, means, PALETTE[k % len(PALETTE)], width=2))
    return Page("store.html", "Store", {"url": store.url, "models": rows,
                                        "chart": svg(chart) if models else ""})


def model_page(store, name: str) -> Page:
    from zoo.config.names import parse_arm

    family, size = parse_arm(name)
    seeds = sorted({r.seed for r in store.runs() if r.arm_name == name})
    if not seeds:
        open_run(name, seed=0, store=store)  # the error that lists what exists
    runs = {seed: open_run(name, seed=seed, store=store) for seed in seeds}
    table = _metrics(family, store, size)
    first = runs[seeds[0]]
    marks = {"stored steps": (first.checkpoint_steps(), "#555"),
             "keyframes": (first.keyframe_steps(), "#d62728")}
    from zoo.store.lineage import branch_record

    record = branch_record(first)
    lines = [(record["from_step"], "branch point")] if record else []
    charts = []
    columns = ["train_loss"] + [c for c in table.columns if c in (
        "loss", "icl", "induction.max", "repetition.drop", "superposition.loss",
        "superposition.represented", "superposition.dims_per_feature") or c.startswith("accuracy.")]
    for column in columns:
        if table[column].notna().sum() == 0:
            continue
        title = (f"{column}: every seed, and their mean with a 95% t band" if len(seeds) > 1 else
                 f"{column}: seed {seeds[0]} (one seed: no interval over seeds)")
        chart = Chart(title, column, marks=marks, lines=lines)
        for k, seed in enumerate(seeds):
            rows = table[(table.seed == seed) & table[column].notna()]
            chart.series.append(Series(f"seed {seed}", rows.step.tolist(), rows[column].tolist(),
                                       PALETTE[k % len(PALETTE)], width=0.8, opacity=0.45))
        steps, means, lows, highs = _mean_curve(table, column)
        if len(seeds) > 1:
            chart.series.append(Series(f"mean of {len(seeds)} seeds", steps, means, "#111",
                                       width=2, band=(lows, highs)))
        else:  # the seed's own curve, drawn as the line to read
            chart.series[-1] = Series(f"seed {seeds[0]}", steps, means, "#111", width=2)
        charts.append(svg(chart))
    rows = []
    for seed, run in runs.items():
        stored = run.checkpoint_steps()
        rows.append({"seed": seed, "state": _state(run), "stored": len(stored),
                     "steps": some_steps(stored), "last": stored[-1],
                     "dictionaries": len(run.dictionary_names()),
                     "attributions": len(stored_attributions(run))})
    about = ""
    if record:
        from zoo.store.lineage import describe

        about = describe(record)
    base = name.partition("@")[0]
    branches = sorted({f"{r.model_name}@{r.branch}" for r in store.runs()
                       if r.branch and r.model_name == base and f"{base}@{r.branch}" != name})
    parent = base if "@" in name else None
    return Page("model.html", name, {"name": name, "branch": about, "runs": rows,
                                     "branches": branches, "parent": parent,
                                     "charts": charts, "superposition": is_superposition(first)})


def is_superposition(run) -> bool:
    """A ReLU output model (no tokens, no attention): its pages are /superposition/..."""
    return run.read_json("run.json").get("config", {}).get("architecture") == "superposition"


def _no_tokens(run, name: str, seed: int, step: int, what: str) -> None:
    if is_superposition(run):
        from zoo_common.errors import ArgumentError

        raise ArgumentError(f"{name} is a superposition model: its data are drawn feature "
                            f"vectors, with no {what} to show; see its weights at "
                            f"{superposition_href(name, seed, step)}")


def some_steps(steps: list[int], n: int = 8) -> list[int]:
    if len(steps) <= n:
        return steps
    picks = np.unique(np.round(np.geomspace(1, len(steps), n)).astype(int) - 1)
    return [steps[i] for i in picks]


def run_page(store, name: str, seed: int, step: int, sample: int | None = None) -> Page:
    from zoo.registry.batches import placements_of, run_data
    from zoo.store.lineage import batch_owner

    run = open_run(name, seed=seed, store=store)
    last = run.status().get("last_step", 0)
    hits = None if sample is None else placements_of(name, seed=seed, sample=sample, store=store)
    values = {"name": name, "seed": seed, "step": step, "previous": max(1, step - 1),
              "following": min(last, step + 1), "sample": sample, "hits": hits, "samples": None}
    title = f"{name} seed {seed}, step {step}"
    _no_tokens(run, name, seed, step, "text")
    if step < 1:
        return Page("run.html", title, values)
    corpus, index = run_data(batch_owner(run, step))
    samples = []
    for sample_id in index.batch_ids(step).tolist():
        document, offset = corpus.provenance(sample_id)
        text = corpus.decode(corpus.samples([sample_id])[0].tolist())
        samples.append({"id": sample_id, "document": document, "offset": offset, "text": text})
    return Page("run.html", title, {**values, "samples": samples})


def attention_page(store, name: str, seed: int, step: int, prompt: str, *,
                   weights_ready: WEIGHTS_READY | None = None) -> Page:
    import torch

    from zoo.registry.loading import load

    run = open_run(name, seed=seed, store=store)
    _no_tokens(run, name, seed, step, "attention")
    last = run.status().get("last_step", 0)
    stored = run.checkpoint_steps()
    if weights_ready is not None:
        weights_ready(run, step)
    model, tokenizer = load(name, seed=seed, step=step, store=store)
    ids = tokenizer(prompt, return_tensors="pt").input_ids[:, : model.config.max_position_embeddings]
    with torch.no_grad():
        patterns = model(input_ids=ids, output_attentions=True).attentions
    labels = [tokenizer.decode([t]) for t in ids[0].tolist()]
    layers = [[heatmap(pattern[0, head].tolist(), labels=labels, title=f"L{layer}H{head}")
               for head in range(pattern.shape[1])] for layer, pattern in enumerate(patterns)]
    how = "stored" if step in stored else "not stored: replayed exactly from the keyframe before it"
    return Page("attention.html", f"{name} seed {seed}: attention at step {step}",
                {"prompt": prompt, "step": step, "last": last, "stored": some_steps(stored, 12),
                 "how": how, "labels": labels, "layers": layers})


def compare_page(store, a: str | None, b: str | None, metric: str | None,
                 branch: str | None) -> Page:
    import base64
    import tempfile

    models = list_models(store=store)
    names = [m.name for m in models] + [f"{m.name}@{label}" for m in models for label in m.branches]
    values = {"names": names, "a": a, "b": b, "branch": branch, "metric": metric, "result": None}
    if not (a and b and metric):
        return Page("compare.html", "Compare", values)
    from zoo.eval.compare_plot import plot_comparison
    from zoo.eval.comparison import compare

    paired = False
    if branch:
        b, paired = f"{b.split('@')[0]}@{branch}", True
    result = compare(a, b, metric, paired=paired, store=store, n_resamples=2000)
    with tempfile.TemporaryDirectory() as folder:
        path = plot_comparison(result, f"{folder}/plot.png")
        with open(path, "rb") as handle:
            png = base64.b64encode(handle.read()).decode()
    return Page("compare.html", f"Compare {a} and {b}",
                {**values, "result": result.format(), "png": png})


def replaying(replay: Replay, ahead: int) -> Page:
    """The page a step shows while it is replayed: how far, and it reloads itself until ready."""
    run = replay.run.run_id
    elapsed = 0 if replay.started is None else round(time.monotonic() - replay.started)
    return Page("replaying.html", f"{run.arm_name} seed {run.seed}, step {replay.step}",
                {"step": replay.step, "keyframe": replay.keyframe, "done": replay.done,
                 "total": replay.total, "started": replay.started is not None,
                 "elapsed": elapsed, "ahead": ahead, "refresh_s": REFRESH_S})


def not_found(message: str, store, *, missing: bool = True) -> Page:
    return Page("not_found.html", "Not found" if missing else "Cannot show this",
                {"message": message, "models": [m.name for m in list_models(store=store)]})


def corrupt(message: str) -> Page:
    return Page("corrupt.html", "Corrupt data", {"message": message})
