"""The pages of `zoo serve`, rendered on the server from the store (HTML with inline SVG charts).

Each function takes the opened store and the request's parameters and returns HTML; a ZooError
(an unknown model, seed or step: its message lists what exists) becomes the 404 page in app.py.
"""
from __future__ import annotations

import html
from urllib.parse import quote

import numpy as np

from zoo.serve.charts import PALETTE, Chart, Series, heatmap, svg
from zoo.store.catalog import list_models, open_run

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em 2.5em; color: #222; max-width: 1100px }
a { color: #0b5cad; text-decoration: none } a:hover { text-decoration: underline }
table { border-collapse: collapse; margin: .6em 0 } td, th { padding: 3px 10px; text-align: left;
  border-bottom: 1px solid #e5e5e5 } th { background: #f6f6f6 }
pre { background: #f7f7f7; padding: .5em .8em; white-space: pre-wrap; overflow-wrap: anywhere }
.sample { border-left: 3px solid #ccd; padding-left: .6em; margin: .5em 0 }
.muted { color: #777 } .bad { color: #b00 } .patterns { display: flex; flex-wrap: wrap; gap: 10px }
nav { margin-bottom: 1em } nav a { margin-right: 1em } form { margin: .6em 0 }
"""


def page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)} - "
            f"Model Zoo</title><style>{STYLE}</style></head><body><nav><a href='/'>Model Zoo</a>"
            f"<a href='/compare'>compare</a></nav><h1>{html.escape(title)}</h1>\n{body}\n"
            f"</body></html>")


def _e(text) -> str:
    return html.escape(str(text))


def model_href(name: str) -> str:
    return f"/model/{quote(name)}"


def run_href(name: str, seed: int, step: int) -> str:
    return f"/run/{quote(name)}/{seed}/{step}"


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


def store_page(store) -> str:
    models = list_models(store=store)
    if not models:
        return page("Store", f"<p>{_e(store.url)}: nothing trained yet (`zoo train tiny "
                             f"--store {_e(store.url)}`).</p>")
    rows, chart = [], Chart("training loss, mean over seeds", "train loss (the step's batch)")
    for k, model in enumerate(models):
        runs = [store.run(r) for r in store.runs() if r.model_name == model.name and not r.branch]
        states = sorted({_state(run) for run in runs})
        steps = [s for seed_steps in model.steps.values() for s in seed_steps]
        branches = ", ".join(f"<a href='{model_href(model.name + '@' + label)}'>@{_e(label)}</a>"
                             for label in model.branches) or "<span class='muted'>none</span>"
        rows.append(f"<tr><td><a class='model' href='{model_href(model.name)}'>{_e(model.name)}</a>"
                    f"</td><td>{_e(model.family)}</td><td>{', '.join(map(str, model.seeds))}</td>"
                    f"<td>0..{max(steps):,} ({len(next(iter(model.steps.values())))} stored)</td>"
                    f"<td>{_e('; '.join(states))}</td><td>{branches}</td></tr>")
        table = _metrics(model.family, store, model.size)
        steps_, means, _, _ = _mean_curve(table, "train_loss")
        chart.series.append(Series(model.name, steps_, means, PALETTE[k % len(PALETTE)], width=2))
    body = (f"<p class='muted'>{_e(store.url)}</p><table id='models'><tr><th>model</th>"
            f"<th>family</th><th>seeds</th><th>steps</th><th>state</th><th>branches</th></tr>"
            f"{''.join(rows)}</table>{svg(chart)}")
    return page("Store", body)


def model_page(store, name: str) -> str:
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
    columns = ["train_loss"] + [c for c in table.columns if c in ("loss", "icl", "induction.max",
                                                                    "repetition.drop")
                                or c.startswith("accuracy.")]
    for column in columns:
        if table[column].notna().sum() == 0:
            continue
        chart = Chart(f"{column}: every seed, and their mean with a 95% t band", column,
                      marks=marks, lines=lines)
        for k, seed in enumerate(seeds):
            rows = table[(table.seed == seed) & table[column].notna()]
            chart.series.append(Series(f"seed {seed}", rows.step.tolist(), rows[column].tolist(),
                                       PALETTE[k % len(PALETTE)], width=0.8, opacity=0.45))
        steps, means, lows, highs = _mean_curve(table, column)
        chart.series.append(Series(f"mean of {len(seeds)} seeds", steps, means, "#111", width=2,
                                   band=(lows, highs)))
        charts.append(svg(chart))
    rows = []
    for seed, run in runs.items():
        stored = run.checkpoint_steps()
        links = " ".join(f"<a href='{run_href(name, seed, s)}'>{s}</a>" for s in _some(stored))
        rows.append(f"<tr><td>{seed}</td><td>{_e(_state(run))}</td><td>{len(stored)}</td>"
                    f"<td>{links}</td><td><a href='/attention/{quote(name)}/{seed}?step="
                    f"{stored[-1]}'>attention</a></td></tr>")
    about = ""
    if record:
        from zoo.store.lineage import describe

        about = f"<p>Branch {_e(describe(record))}.</p>"
    body = (f"{about}<table id='runs'><tr><th>seed</th><th>state</th><th>stored steps</th>"
            f"<th>a step's batch</th><th></th></tr>{''.join(rows)}</table>{''.join(charts)}")
    return page(name, body)


def _some(steps: list[int], n: int = 8) -> list[int]:
    if len(steps) <= n:
        return steps
    picks = np.unique(np.round(np.geomspace(1, len(steps), n)).astype(int) - 1)
    return [steps[i] for i in picks]


def run_page(store, name: str, seed: int, step: int, sample: int | None = None) -> str:
    from zoo.registry.batches import placements_of, run_data
    from zoo.store.lineage import batch_owner

    run = open_run(name, seed=seed, store=store)
    last = run.status().get("last_step", 0)
    nav = (f"<p><a href='{run_href(name, seed, max(1, step - 1))}'>&larr; step {max(1, step - 1)}</a>"
           f" &nbsp; <a href='{run_href(name, seed, min(last, step + 1))}'>step {min(last, step + 1)}"
           f" &rarr;</a> &nbsp; <a href='/run/{quote(name)}/{seed}/{step}/snapshot.zip'>download "
           f"the weights at step {step} (a Hugging Face folder, zip)</a> &nbsp; <a href='/attention/"
           f"{quote(name)}/{seed}?step={step}'>attention at step {step}</a></p>")
    found = ""
    if sample is not None:
        hits = placements_of(name, seed=seed, sample=sample, store=store)
        links = ", ".join(f"<a href='{run_href(name, seed, s)}'>{s}</a> (position {p})" for s, p in hits)
        found = f"<p id='steps-of'>sample {sample} was in {len(hits)} batch(es): {links or 'none'}</p>"
    form = (f"<form method='get'><label>steps that saw sample <input name='sample' type='number' "
            f"min='0' value='{'' if sample is None else sample}'></label> <button>find</button></form>")
    if step < 1:
        return page(f"{name} seed {seed}, step {step}",
                    nav + form + found + "<p>Step 0 is the initial weights: no batch.</p>")
    corpus, index = run_data(batch_owner(run, step))
    ids = index.batch_ids(step)
    samples = []
    for position, sample_id in enumerate(ids.tolist()):
        document, offset = corpus.provenance(sample_id)
        text = corpus.decode(corpus.samples([sample_id])[0].tolist())
        samples.append(f"<div class='sample'><div class='muted'>position {position} - sample "
                       f"<a href='?sample={sample_id}'>{sample_id}</a> - document {_e(document)}, "
                       f"token {offset}</div><pre>{_e(text)}</pre></div>")
    body = (f"{nav}{form}{found}<h2>The batch step {step} trained on ({len(ids)} samples)</h2>"
            f"<div id='batch'>{''.join(samples)}</div>")
    return page(f"{name} seed {seed}, step {step}", body)


def attention_page(store, name: str, seed: int, step: int, prompt: str) -> str:
    import torch

    from zoo.registry.loading import load

    run = open_run(name, seed=seed, store=store)
    last = run.status().get("last_step", 0)
    stored = run.checkpoint_steps()
    model, tokenizer = load(name, seed=seed, step=step, store=store)
    ids = tokenizer(prompt, return_tensors="pt").input_ids[:, : model.config.max_position_embeddings]
    with torch.no_grad():
        patterns = model(input_ids=ids, output_attentions=True).attentions
    labels = [tokenizer.decode([t]) for t in ids[0].tolist()]
    grids = []
    for layer, pattern in enumerate(patterns):
        cells = "".join(heatmap(pattern[0, head].tolist(), labels=labels, title=f"L{layer}H{head}")
                        for head in range(pattern.shape[1]))
        grids.append(f"<h3>layer {layer}</h3><div class='patterns'>{cells}</div>")
    how = "stored" if step in stored else "not stored: replayed exactly from the keyframe before it"
    form = (f"<form id='controls' method='get'><label>prompt <input name='prompt' size='60' "
            f"value='{_e(prompt)}'></label><br><label>step <input id='step' name='step' "
            f"type='range' min='0' max='{last}' value='{step}' oninput=\"document.getElementById("
            f"'shown').textContent=this.value\" onchange='this.form.submit()'></label> "
            f"<span id='shown'>{step}</span> <button>show</button> <span class='muted'>stored: "
            f"{', '.join(map(str, _some(stored, 12)))}...</span></form>")
    body = (f"{form}<p>step {step} ({how}); {len(labels)} tokens: "
            f"{_e(' | '.join(labels))}</p><div id='attention'>{''.join(grids)}</div>")
    return page(f"{name} seed {seed}: attention at step {step}", body)


def compare_page(store, a: str | None, b: str | None, metric: str | None, branch: str | None) -> str:
    import base64
    import tempfile

    models = list_models(store=store)
    names = [m.name for m in models] + [f"{m.name}@{label}" for m in models for label in m.branches]
    options = "".join(f"<option value='{_e(n)}'>" for n in names)
    form = (f"<form method='get'><datalist id='names'>{options}</datalist>A <input name='a' "
            f"list='names' value='{_e(a or '')}'> B <input name='b' list='names' value='{_e(b or '')}'>"
            f" branch of B <input name='branch' size='10' value='{_e(branch or '')}'> metric "
            f"<input name='metric' value='{_e(metric or 'train_loss')}'> <button>compare</button>"
            f"</form><p class='muted'>The same test and plot as `zoo compare A B --metric M` "
            f"(a branch: paired by seed).</p>")
    if not (a and b and metric):
        return page("Compare", form)
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
    body = (f"{form}<img id='comparison' alt='comparison plot' src='data:image/png;base64,{png}'>"
            f"<pre>{_e(result.format())}</pre>")
    return page(f"Compare {a} and {b}", body)


def not_found(message: str, store, *, missing: bool = True) -> str:
    names = ", ".join(f"<a href='{model_href(m.name)}'>{_e(m.name)}</a>" for m in list_models(store=store))
    return page("Not found" if missing else "Cannot show this", f"<p class='bad'>{_e(message)}</p><p>Models in this store: "
                             f"{names or 'none'}.</p>")

