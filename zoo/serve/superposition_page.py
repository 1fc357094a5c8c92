"""The superposition page: a ReLU output model (Elhage et al. 2022) at any step, as the paper
draws it.

    /superposition/NAME/SEED?step=N            (default: the last stored step)
    /superposition/NAME/SEED?step=N&dims=all   dimensionality over steps for every seed

At the step (stored, or not stored and replayed exactly through zoo.load): W^T W beside b, the
feature norms ||W_i|| as bars coloured by interference, and for m = 2 the columns W_i in the plane
(the k-gon); then each feature's dimensionality D_i over the stored steps, read from zoo.metrics'
superposition.dimensionality_i columns where `zoo eval --metric superposition` measured them and
computed from the stored checkpoint's W at the other stored steps. The numbers come from
zoo.eval.superposition_metrics (feature_geometry, kgon), so the page and zoo eval agree.
"""
from __future__ import annotations

import numpy as np

from zoo.serve.charts import Chart, Series, svg
from zoo.serve.feature_charts import feature_colour, feature_key, gram_heatmap, norm_bars, plane
from zoo.serve.pages import WEIGHTS_READY, Page, is_superposition, some_steps
from zoo.store.catalog import open_run
from zoo_common.errors import ArgumentError

DIMS_CHOICES = ("seed", "all")
_COLUMN = "superposition.dimensionality_{}"


def superposition_page(store, name: str, seed: int, step: int | None, dims: str = "seed", *,
                       weights_ready: WEIGHTS_READY | None = None) -> Page:
    from zoo.eval.superposition_metrics import REPRESENTED, feature_geometry, kgon, weights_of
    from zoo.registry.loading import load

    if dims not in DIMS_CHOICES:
        raise ArgumentError(f"dims must be one of {', '.join(DIMS_CHOICES)} (the chosen seed, or "
                            f"every seed), got {dims!r}")
    run = open_run(name, seed=seed, store=store)
    if not is_superposition(run):
        raise ArgumentError(f"{name} is not a superposition model (architecture "
                            f"{run.read_json('run.json')['config'].get('architecture')!r}): "
                            f"see /attention/{name}/{seed} for a transformer")
    stored = run.checkpoint_steps()
    step = stored[-1] if step is None else step
    last = max(run.status().get("last_step", 0), stored[-1])
    if weights_ready is not None:
        weights_ready(run, step)
    model, _ = load(name, seed=seed, step=step, store=store)
    W, b = weights_of(model)
    m, n = W.shape
    geometry = feature_geometry(W)
    norms = geometry["norm"]
    represented = norms > REPRESENTED
    config = run.read_json("run.json")["config"]
    facts = {"n": n, "m": m, "source": config["data"]["source"],
             "represented": int(represented.sum()),
             "dims_per_feature": m / max(float((W**2).sum()), 1e-300),
             "interference_mean": float(geometry["interference"][represented].mean())
             if represented.any() else 0.0, "kgon": None}
    pictures = {"gram": gram_heatmap(W, b, title=f"W\u1d40W and b at step {step:,}"),
                "bars": norm_bars(norms, geometry["interference"], geometry["dimensionality"],
                                  threshold=REPRESENTED,
                                  title=f"feature norms \u2016W_i\u2016 at step {step:,}"),
                "plane": None}
    if m == 2:
        k, irregular = kgon(W)
        facts["kgon"] = {"k": k, "irregularity": irregular}
        pictures["plane"] = plane(W, threshold=REPRESENTED,
                                  title=f"the columns W_i in the plane at step {step:,}")
    seeds = sorted({r.seed for r in store.runs() if r.arm_name == name})
    shown = [seed] + [s for s in seeds if s != seed] if dims == "all" else [seed]
    histories = _dimensionality(store, name, shown, n)
    charts = [_dimensionality_chart(s, *histories[s], n, step) for s in shown]
    how = "stored" if step in stored else "not stored: replayed exactly from the keyframe before it"
    return Page("superposition.html", f"{name} seed {seed}: superposition at step {step:,}",
                {"name": name, "seed": seed, "seeds": seeds, "step": step, "last": last,
                 "stored": some_steps(stored, 12), "how": how, "dims": dims, "facts": facts,
                 "threshold": REPRESENTED, **pictures, "key": feature_key(n),
                 "dimensionality": charts})


def _dimensionality(store, name: str, seeds: list[int], n: int) -> dict:
    """seed -> (steps, D [steps, n], how many steps came from zoo eval, how many computed)."""
    from zoo.config.names import parse_arm
    from zoo.eval.superposition_metrics import feature_geometry
    from zoo.eval.tables import metrics_table

    family, size = parse_arm(name)
    table = metrics_table(family, store=store, sizes=[size])
    columns = [_COLUMN.format(i) for i in range(n)]
    evaluated = all(c in table.column_names for c in columns)
    if evaluated:
        table = table.select(["seed", "step", *columns]).to_pandas()
    out = {}
    for seed in seeds:
        by_step = {}
        if evaluated:
            rows = table[(table.seed == seed) & table[columns].notna().all(axis=1)]
            by_step = {int(s): v for s, v in zip(rows.step, rows[columns].to_numpy(float))}
        from_eval = len(by_step)
        run = open_run(name, seed=seed, store=store)
        for step in run.checkpoint_steps():
            if step not in by_step:
                W = run.read_tensor(step, "W").double().numpy()
                by_step[step] = feature_geometry(W)["dimensionality"]
        steps = sorted(by_step)
        out[seed] = (steps, np.array([by_step[s] for s in steps]).reshape(len(steps), n),
                     from_eval, len(steps) - from_eval)
    return out


def _dimensionality_chart(seed: int, steps: list[int], dims: np.ndarray, from_eval: int,
                          computed: int, n: int, step: int):
    where = (f"{from_eval} steps from zoo eval" if from_eval else "") + \
            (", " if from_eval and computed else "") + \
            (f"{computed} computed from the stored W" if computed else "")
    chart = Chart(f"seed {seed}: dimensionality D_i of each feature over steps ({where})",
                  "D_i = \u2016W_i\u2016\u00b2 / \u03a3_j (\u0174_i \u00b7 W_j)\u00b2",
                  lines=[(step, f"step {step:,}")],
                  levels=[(1.0, "1: own dimension"), (0.5, "1/2: antipodal pair"),
                          (0.4, "2/5: pentagon")])
    for i in range(n):
        chart.series.append(Series(f"feature {i}", steps, dims[:, i].tolist(),
                                   feature_colour(i, n), width=1.3, opacity=0.85))
    return svg(chart, width=860, height=340)
