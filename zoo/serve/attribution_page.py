"""Attribution pages: a run's stored attributions, and one of them as a table of its top and bottom
samples with their text, document and the steps that trained on them (linked to those steps).

Nothing is computed here: the scores are those `zoo attribute` stored, shown only while they are
current for the run and intact (zoo.attribution.stored)."""
from __future__ import annotations

from zoo.attribution.stored import read_stored, stored_attributions
from zoo.attribution.trajectory import METHODS
from zoo.registry.batches import run_data
from zoo.serve.pages import Page
from zoo.store.catalog import open_run
from zoo_common.errors import ArgumentError

TOP = 20  # samples shown at each end by default
METHOD_WORDS = {"adam": "AdamW-preconditioned (the step's own preconditioner)",
                "tracin": "TracIn (learning rate x gradient dot product)"}


def attributions_page(store, name: str, seed: int) -> Page:
    run = open_run(name, seed=seed, store=store)
    return Page("attributions.html", f"{name} seed {seed}: attributions",
                {"name": name, "seed": seed, "attributions": stored_attributions(run)})


def attribution_page(store, name: str, seed: int, key: str, method: str | None,
                     top: int | None) -> Page:
    method = method or "adam"
    if method not in METHODS:
        raise ArgumentError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    top = TOP if top is None else top
    if not 1 <= top <= 500:
        raise ArgumentError(f"top is how many samples each end shows, 1..500; got {top}")
    run = open_run(name, seed=seed, store=store)
    result = read_stored(run, key)
    corpus, _ = run_data(run)
    table = result.per_sample(method).to_pylist()

    def rows(part, start):
        shown = []
        for rank, row in enumerate(part, start=start):
            text = corpus.decode(corpus.samples([row["sample_id"]])[0].tolist())
            shown.append({"rank": rank, "score": row["score"], "sample": row["sample_id"],
                          "document": row["document_id"], "steps": sorted(row["steps"]),
                          "text": text})
        return shown

    n = len(table)
    values = {"name": name, "seed": seed, "key": key, "method": method, "methods": METHODS,
              "method_words": METHOD_WORDS[method], "top_n": top, "samples": n,
              "target_words": result.target_words, "from_step": result.from_step,
              "until_step": result.until_step, "seconds": result.seconds,
              "top": rows(table[:top], 1),
              "bottom": rows(table[-top:][::-1], 1) if n > top else []}
    title = (f"{name} seed {seed}: which samples of steps {result.from_step + 1}..{result.until_step} "
             f"moved {result.target}")
    return Page("attribution.html", title, values)
