"""Per-example scores across seeds: the [seeds, examples] matrix that multi_bootstrap resamples.

    a = zoo.per_example("tiny-2l64", step=300)      # a.values: [3 seeds, 64 examples], float64
    b = zoo.per_example("tiny-2l128", step=300)
    zoo.stats.multi_bootstrap(a.values, b.values, paired=True, seeds_a=a.seeds, seeds_b=b.seeds)

metric "neurons.firing" / "neurons.kurtosis" / "neurons.token_entropy": each MLP neuron's measure
(zoo.eval.neuron_metrics) on that held-out set; the columns are the model's neurons.

metric "loss": each held-out sample's mean next-token loss (zoo.eval.metrics.per_example_loss) on
the held-out set `zoo eval` measures `loss` on (zoo.eval.heldout, from the corpus of the first run
of a branch's line; with the same heldout= and
heldout_samples= it is the same set, and `result.heldout` is the fingerprint that zoo.metrics'
`heldout.loss` column holds). A row's mean is that seed's `loss` at the step, up to float
rounding; `zoo compare` resamples exactly these numbers.

The models: a stored step is decoded into the evaluation's model cache (the load_state_dict path
of evaluate_family, one model object per architecture); a step between checkpoints is replayed
from the keyframe before it and opened as zoo.load opens it (a cached snapshot folder).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from zoo_common.arguments import whole_number
from zoo_common.errors import ZooError
from zoo.config.names import arm_name, labelled, parse_arm
from zoo.eval.evaluate import ReusedModels, family_runs, probe_corpus
from zoo.eval.heldout import DEFAULT_SAMPLES, build_heldout
from zoo.eval.metrics import per_example_loss
from zoo.eval.neuron_metrics import neuron_table
from zoo.registry.loading import open_snapshot
from zoo.registry.snapshots import check_step, run_snapshot
from zoo.store.corpora import open_corpus
from zoo.store.store import Store

NEURON_FIELDS = ("firing", "kurtosis", "token_entropy")  # zoo.eval.neuron_metrics, one per neuron
PER_EXAMPLE_METRICS = ("loss",) + tuple(f"neurons.{f}" for f in NEURON_FIELDS)


@dataclass(frozen=True, eq=False)
class PerExample:
    """values[i, j]: the metric of seed seeds[i]'s model at `step` on held-out example j.

    values is a read-only float64 array [n_seeds, n_examples], rows in ascending seed order;
    heldout is the held-out set's fingerprint (as in zoo.metrics' `heldout.loss` column) and
    heldout_rule says in words how its documents were chosen. unit names a column: a held-out
    sample for `loss` (the same samples in every seed), a neuron for `neurons.*` (each seed's own
    MLP neurons, in layer order: the columns of two models are not the same units)."""

    name: str
    metric: str
    step: int
    seeds: tuple[int, ...]
    values: np.ndarray
    heldout: str
    heldout_rule: str
    unit: str = "held-out sample"

    @property
    def n_seeds(self) -> int:
        return self.values.shape[0]

    @property
    def n_examples(self) -> int:
        return self.values.shape[1]


def check_per_example_metric(metric) -> str:
    if metric not in PER_EXAMPLE_METRICS:
        raise ZooError(
            f"no per-example values for metric {metric!r}; metrics with one number per example: "
            f"{', '.join(PER_EXAMPLE_METRICS)} (other metrics have one number per seed and step: "
            "zoo.metrics(family) holds them)"
        )
    return metric


def per_example(
    name: str,
    *,
    metric: str = "loss",
    step: int,
    seeds: Sequence[int] | int | None = None,
    store: str | Store | None = None,
    heldout: str | None = None,
    heldout_samples: int = DEFAULT_SAMPLES,
    branch: str | None = None,
) -> PerExample:
    """The [seeds, examples] matrix of `metric` for model `name` (`<family>-<size>`) at `step`;
    `branch=LABEL` (or `name@LABEL`) reads that branch, probed with its line's first run's
    held-out set (as zoo eval probes it), so a branch and its parent score the same examples.

    seeds: a seed or a list of them (default: every seed of the model). step: any stored step,
    or any step a keyframe before it can replay. heldout / heldout_samples: the held-out set, as
    in evaluate_family (the defaults give the set `zoo eval` and `zoo compare` use). Errors name
    what was wrong and list the choices (metrics, seeds, stored steps)."""
    from zoo.store.catalog import open_store

    metric = check_per_example_metric(metric)
    step = whole_number(step, "step", minimum=0)
    heldout_samples = whole_number(heldout_samples, "heldout_samples", minimum=1)
    store = open_store(store)
    family, size = parse_arm(labelled(name, branch))
    runs = sorted(family_runs(store, family, sizes=[size], seeds=seeds), key=lambda r: r.seed)
    runs = [store.run(run_id) for run_id in runs]
    for run in runs:  # every seed can serve the step, before any model is loaded
        check_step(run, step, run.checkpoint_steps())
    models, rows, sets = ReusedModels(), [], {}
    for run in runs:
        record = run.read_json("run.json")
        fingerprint = probe_corpus(run, record)
        if fingerprint not in sets:
            sets[fingerprint] = build_heldout(
                open_corpus(store, fingerprint), n_samples=heldout_samples, heldout=heldout
            )
        if step in run.checkpoint_steps():
            model = models.load(
                record["hf_config"], run.read_checkpoint(step).tensors, f"{run.run_id} step {step}"
            )
        else:  # between checkpoints: replayed once, then a cached snapshot, exactly as zoo.load
            model, _ = open_snapshot(run_snapshot(run, step))
        tokens = torch.from_numpy(sets[fingerprint].tokens)
        if metric == "loss":
            rows.append(per_example_loss(model, tokens).double().numpy())
        else:
            rows.append(neuron_table(model, tokens)[metric.removeprefix("neurons.")].astype(np.float64))
    if len(sets) > 1:
        raise ZooError(
            f"the seeds of {name} were trained on {len(sets)} different corpora, so they have no "
            "common held-out examples; ask for the seeds of one corpus (seeds=[...])"
        )
    (chosen,) = sets.values()
    values = np.stack(rows)
    values.setflags(write=False)
    return PerExample(
        name=arm_name(family, size),
        metric=metric,
        step=step,
        seeds=tuple(run.run_id.seed for run in runs),
        values=values,
        heldout=chosen.fingerprint,
        heldout_rule=chosen.rule,
        unit="held-out sample" if metric == "loss" else "neuron",
    )
