"""Dictionaries over a run's stored steps: which steps to sweep, and their features' lineages."""
from __future__ import annotations

from zoo_common.errors import ArgumentError, NotFoundError
from zoo.dictionaries.dictionary_runs import load_named, list_run_dicts
from zoo.dictionaries.lineage import DEFAULT_THRESHOLD, track


def stored_steps(name: str, *, seed: int, store, every: int = 1, branch: str | None = None) -> list[int]:
    """Every `every`-th stored step of the run, its last step always among them."""
    from zoo.store.catalog import open_run

    steps = open_run(name, seed=seed, store=store, branch=branch).checkpoint_steps()
    chosen = steps[::every]
    if steps and chosen[-1] != steps[-1]:
        chosen.append(steps[-1])
    return chosen


def track_run(name: str, *, seed: int, site: str, kind: str | None = None,
              width: int | None = None, threshold: float = DEFAULT_THRESHOLD, store=None,
              branch: str | None = None):
    """The lineage table (lineage.track) of the run's dictionaries on `site`, one per step."""
    from zoo.store.catalog import open_run

    run = open_run(name, seed=seed, store=store, branch=branch)
    chosen = [d for d in list_run_dicts(run) if site in (d["site"], d["module"])
              and kind in (None, d["config"]["kind"]) and width in (None, d["config"]["width"])]
    if len(chosen) < 2:
        raise NotFoundError(f"{run.run_id} has {len(chosen)} dictionar{'y' if len(chosen) == 1 else 'ies'} "
                            f"on {site!r}; tracking needs one at each of two or more steps "
                            f"(`zoo dict train ... --step all`)")
    by_step: dict[int, list[dict]] = {}
    for d in chosen:
        by_step.setdefault(d["step"], []).append(d)
    crowded = {s: ds for s, ds in by_step.items() if len(ds) > 1}
    if crowded:
        step, ds = next(iter(crowded.items()))
        shapes = ", ".join(f"{d['config']['kind']}{d['config']['width']}" for d in ds)
        raise ArgumentError(f"step {step} has {len(ds)} dictionaries on {site!r} ({shapes}): give "
                            f"--kind and --width to choose one per step")
    steps = sorted(by_step)
    loaded = [load_named(run, by_step[s][0]["name"]) for s in steps]
    return track(steps, [d.W_dec.detach().numpy() for d in loaded],
                 [d.density.numpy() for d in loaded], threshold=threshold)
