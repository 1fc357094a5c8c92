"""Dictionaries beside checkpoints: train one on a run's activations at a step, store it beside the
run (content-addressed blobs + a JSON record, verified on every read), find and load it again.

    d = zoo.train_dict("superposition-n20m5s0.999", seed=1, step=10000, site="hidden",
                       kind="topk", width=20, k=1)
    d = zoo.load_dict("superposition-n20m5s0.999", seed=1, step=10000, site="hidden")
    d.encode(x), d.decode(z), d.record["quality"]

A record names everything that decides the dictionary's bits: the run and step (and the source
of the weights it read: a stored checkpoint's blobs or a replay's keyframe), the site, the data
(training steps A..B exactly as trained, or the held-out set), the kind and its settings, and the
seed of the named stream "dict"; with it, the quality measures (quality.py) and the environment.
"""
from __future__ import annotations

import hashlib
import json
import os
import time

import numpy as np
import torch

from zoo_common.arguments import whole_number
from zoo_common.errors import ArgumentError, NotFoundError, ZooError
from zoo import environment
from zoo.dictionaries.activations import Activations, DataWindow, collect
from zoo.dictionaries.quality import feature_density, loss_recovered, reconstruction_quality
from zoo.models.sites import HIDDEN, Site, resolve_site
from zoo.dictionaries.sparse_autoencoder import TRAINER, DictionaryConfig, SparseAutoencoder, fit
from zoo.store.run_store import RunStore
from zoo.store.store import Store

DEFAULT_WINDOW = 64  # training steps of activations, ending at the dictionary's step
HELDOUT_ROWS = 64  # held-out sequences (or 64 x 128 feature vectors) for loss recovered


class Dictionary(SparseAutoencoder):
    """A stored dictionary: the autoencoder with its record (`record["site"]`, `["quality"]`, ...)
    and `density`, each feature's share of the training activations it is active on."""

    record: dict
    density: torch.Tensor

    @classmethod
    def of(cls, record: dict, tensors: dict[str, torch.Tensor]) -> Dictionary:
        tensors = dict(tensors)
        density = tensors.pop("density")
        sae = cls.from_tensors(tensors, record["config"]["kind"], record["config"].get("k"))
        sae.record, sae.density = record, density
        return sae


def train_dict(name: str, *, seed: int, step: int, site: str, kind: str = "topk",
               width: int = 1024, k: int = 32, l1: float = 1e-3, lr: float = 1e-3,
               steps: int = 2000, batch: int = 1024, dict_seed: int = 0, data: str | None = None,
               store: str | os.PathLike | Store | None = None, branch: str | None = None,
               warm_start: Dictionary | None = None, progress: bool = False) -> Dictionary:
    """Train a dictionary on `site` of (name, seed) at `step` and store it beside the run.

    data: None (the 64 training steps that end at `step`, as trained), "A:B" (training steps A..B)
    or "heldout". The same call twice gives the same bits; when the store already holds the very
    dictionary the call describes, it is loaded instead of trained again."""
    from zoo.store.catalog import open_run

    step = whole_number(step, "step")
    config = DictionaryConfig(kind=kind, width=width, k=k, l1=l1, lr=lr, steps=steps, batch=batch,
                              seed=whole_number(dict_seed, "dict_seed"))
    run = open_run(name, seed=seed, store=store, branch=branch)
    started = time.perf_counter()
    model, weights_source = model_at(run, step, progress=progress)
    where = resolve_site(site, model)
    config.check(where.width)
    last = int(run.status().get("last_step", step))
    window = DataWindow.parse(data, step=step, last_step=last, default_steps=DEFAULT_WINDOW)
    ident = _identity(run, step, where, config, window, weights_source, warm_start)
    record_name = f"{where.slug}.step-{step:08d}.{config.kind}{config.width}.{ident[:12]}"
    if record_name in run.dictionary_names():
        return load_named(run, record_name)
    activations = gather_activations(run, model, where, window)
    with environment.held_thread_count():
        sae, training = fit(activations.values, config, init=warm_start)
    quality = reconstruction_quality(sae, activations.values)
    density = feature_density(sae, activations.values)
    inputs, on = _loss_inputs(run, activations, window)
    quality.update(loss_recovered(model, where, sae, inputs), loss_recovered_on=on)
    if where.name == HIDDEN:
        from zoo.eval.superposition_metrics import ground_truth_score

        quality["ground_truth_mmcs"] = ground_truth_score(sae.W_dec, model.W)
    record = {
        "name": record_name, "step": step, "site": where.name, "module": where.module,
        "capture": where.capture, "d_in": where.width, "config": config.record(),
        "data": window.record(), "weights": weights_source,
        "warm_start": None if warm_start is None else warm_start.record["name"],
        "training": {**training, "seconds": round(time.perf_counter() - started, 3),
                     "threads": torch.get_num_threads(), "trainer": TRAINER},
        "quality": quality, "environment": environment.fingerprint("cpu"),
    }
    run.write_dictionary(record_name, record, {**sae.tensors(), "density": density})
    return load_named(run, record_name)


def load_dict(name: str, *, seed: int, step: int, site: str, kind: str | None = None,
              width: int | None = None, store: str | os.PathLike | Store | None = None,
              branch: str | None = None) -> Dictionary:
    """The stored dictionary of (name, seed, step, site) (and kind / width where several are)."""
    from zoo.store.catalog import open_run

    run = open_run(name, seed=seed, store=store, branch=branch)
    step = whole_number(step, "step")
    matches = [d for d in list_run_dicts(run) if d["step"] == step and site in (d["site"], d["module"])
               and kind in (None, d["config"]["kind"]) and width in (None, d["config"]["width"])]
    if not matches:
        known = "; ".join(f"step {d['step']} {d['site']} {d['config']['kind']}{d['config']['width']}"
                          for d in list_run_dicts(run)[:10]) or "none"
        raise NotFoundError(f"no dictionary of {run.run_id} at step {step} on {site!r}"
                            f"{'' if kind is None else f' of kind {kind}'}"
                            f"{'' if width is None else f' of width {width}'}; stored: {known} "
                            f"(train one with `zoo dict train`)")
    if len(matches) > 1:
        choices = ", ".join(f"{d['config']['kind']}{d['config']['width']} ({d['name']})" for d in matches)
        raise ArgumentError(f"{len(matches)} dictionaries of {run.run_id} at step {step} on {site!r}: "
                            f"{choices}; pass kind= and width= (or load one by name)")
    return load_named(run, matches[0]["name"])


def list_run_dicts(run: RunStore) -> list[dict]:
    """Every dictionary stored beside `run`: its record (without tensor references), by step."""
    records = []
    for record_name in run.dictionary_names():
        record = run.dictionary_record(record_name)
        record.pop("tensors", None)
        records.append(record)
    return sorted(records, key=lambda d: (d["step"], d["site"], d["name"]))


def load_named(run: RunStore, record_name: str) -> Dictionary:
    """A dictionary of an opened run by its record name (zoo dict ls lists them)."""
    record, tensors = run.read_dictionary(record_name)
    return Dictionary.of(record, tensors)


def model_at(run: RunStore, step: int, *, progress: bool = False):
    """The model at `step` and what its weights were built from (the snapshot's record)."""
    from zoo.registry.loading import open_snapshot
    from zoo.registry.snapshots import run_snapshot

    folder = run_snapshot(run, step, progress=progress)
    model, _ = open_snapshot(folder)
    snapshot_record = json.loads((folder / "zoo_snapshot.json").read_text())
    return model, {"source_id": snapshot_record["source_id"], **snapshot_record["source"]}


def _identity(run, step, site: Site, config: DictionaryConfig, window: DataWindow,
              weights: dict, warm_start) -> str:
    described = {"run": run.run_id.key, "step": step, "site": site.name, "module": site.module,
                 "capture": site.capture, "config": config.record(), "data": window.record(),
                 "weights": weights.get("source_id"),
                 "warm_start": None if warm_start is None else warm_start.record["name"],
                 "threads": torch.get_num_threads(), "trainer": TRAINER}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def gather_activations(run: RunStore, model, site: Site, window: DataWindow) -> Activations:
    """The activations of `site` on the window's data, exactly as a dictionary trains on them."""
    from zoo.registry.trained_batches import StepBatches

    if window.source == "heldout":
        inputs = heldout_inputs(run, rows=None)
        return collect(model, site, [(0, np.full(len(inputs), -1, dtype=np.int64), inputs)])
    batches = StepBatches(run, window.first, window.last - window.first + 1)
    parts = []
    for k in range(len(batches)):
        ids, item = batches.item(k)
        inputs = item["features"] if "features" in item else item["input_ids"]
        parts.append((window.first + k, ids, inputs))
    return collect(model, site, parts)


def _loss_inputs(run: RunStore, activations: Activations, window: DataWindow):
    """Inputs to measure the loss recovered on: held-out data, or, for a corpus with none (a mix
    that trains on all of itself, as the induction family's), the window's first sequences."""
    try:
        return heldout_inputs(run), "heldout"
    except ZooError:
        from zoo.registry.trained_batches import StepBatches

        first = window.first if window.source == "training" else 1
        _, item = StepBatches(run, first, 1).item(0)
        inputs = item["features"] if "features" in item else item["input_ids"]
        return inputs[:HELDOUT_ROWS], f"training step {first} (the corpus has no held-out split)"


def heldout_inputs(run: RunStore, rows: int | None = HELDOUT_ROWS) -> torch.Tensor:
    """Held-out inputs of the run: never-trained text (zoo.eval.heldout) or a held-out draw."""
    from zoo.store.corpora import open_corpus

    corpus = open_corpus(run.store, run.read_json("run.json")["corpus_fingerprint"])
    if getattr(corpus, "drawn", False):
        from zoo.eval.superposition_metrics import HELDOUT_SAMPLES, HELDOUT_SEED

        count = HELDOUT_SAMPLES if rows is None else rows * 128
        return torch.from_numpy(corpus.samples(np.arange(count), data_seed=HELDOUT_SEED))
    from zoo.eval.heldout import build_heldout

    tokens = torch.from_numpy(build_heldout(corpus).tokens)
    return tokens if rows is None else tokens[:rows]
