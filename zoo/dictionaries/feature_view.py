"""What one feature of a stored dictionary is: where it fires, how often, what it writes, and
what became of it over training.

    view = describe_feature(run, "blocks.0.hook_resid_post.step-00000008.topk64.3f0c...", 5)
    view.contexts       # its top rows in the dictionary's own data: activation, sample id,
                        # position, document, the text around the token (marked), and the steps
                        # whose batch held the sample (the superposition model: its input features)
    view.density, view.fires_on, view.rows     # the stored density, and the rows it is active on
    view.logit_effect   # W_dec[f] through the unembedding: the tokens it promotes and suppresses
    view.lineage        # the same feature in the run's dictionaries at other steps (lineage.track)

The contexts come from collecting the activations again exactly as the dictionary's record says
(its weights, site, data window and thread count: collection is deterministic) and encoding them;
the re-collection is checked against the stored density (`FeatureView.reproduced`). One pass
keeps every feature's top rows, so after a dictionary's first feature (seconds) its others are
answered from memory.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import torch

from zoo.dictionaries.activations import Activations, DataWindow
from zoo.environment import held_thread_count
from zoo.dictionaries.dictionary_runs import (
    Dictionary,
    gather_activations,
    heldout_inputs,
    list_run_dicts,
    load_named,
)
from zoo.dictionaries.lineage import DEFAULT_THRESHOLD, track
from zoo.models.sites import HIDDEN, Site
from zoo.store.run_store import RunStore
from zoo_common.errors import ArgumentError, NotFoundError, ZooError

TOP = 20  # contexts kept per feature
BEFORE, AFTER = 32, 4  # tokens of text shown before and after the marked token
CHUNK = 8192  # rows encoded at once (as quality.feature_density counts them)
_KEPT = 4  # scanned dictionaries kept per process


@dataclass(frozen=True)
class Context:
    """One row of the dictionary's data on which the feature is active."""

    activation: float
    sample: int  # the sample id in the run's corpus; -1: held-out data
    position: int  # the token's position in the sample (0 for a feature vector)
    step: int  # the training step whose batch this row came from (0: held-out)
    document: str | None  # the document that holds the token; None: none recorded
    before: str = ""  # token models: the text before the token, the token, a few tokens after
    token: str = ""
    after: str = ""
    features: tuple[tuple[int, float], ...] = ()  # superposition: the sample's nonzero inputs
    steps_of: tuple[int, ...] | None = None  # steps whose batch held it; None: seen once / held out


@dataclass(frozen=True)
class LogitEffect:
    """W_dec[f] written to the output: per token (or output feature), top and bottom first."""

    values: torch.Tensor  # [vocab] (token models) or [n features] (the superposition model)
    top: tuple[tuple[int, str, float], ...]  # (id, label, value), largest first
    bottom: tuple[tuple[int, str, float], ...]  # smallest first
    space: str  # "tokens" or "output features"
    how: str  # what was multiplied, in words


@dataclass(frozen=True)
class LineagePoint:
    step: int
    feature: int
    cosine: float | None  # with the lineage's feature at the step before; None where born
    density: float
    dictionary: str  # the record name of that step's dictionary


@dataclass(frozen=True)
class FeatureLineage:
    """The feature's lineage among the run's dictionaries on its site (same kind and width)."""

    lineage: int
    born: int  # the step it appears (the first tracked step: it may be older)
    gone: int | None  # the first tracked step without it; None: alive at the last one
    points: tuple[LineagePoint, ...]
    steps: tuple[int, ...]  # every tracked step
    threshold: float


@dataclass(frozen=True)
class FeatureView:
    dictionary: str
    step: int
    site: str
    feature: int
    width: int
    density: float  # the stored density: its share of the rows it is active on
    fires_on: int  # the rows it is active on, counted again
    rows: int
    reproduced: bool  # the re-collected activations give exactly the stored density
    contexts: list[Context]
    logit_effect: LogitEffect | None
    lineage: FeatureLineage | None
    lineage_note: str  # why there is no lineage, or ""


def find_dictionary(run: RunStore, record_name: str) -> Dictionary:
    """The stored dictionary `record_name` of `run`; a NotFoundError listing the stored ones."""
    names = run.dictionary_names()
    if record_name not in names:
        raise NotFoundError(f"no dictionary {record_name!r} beside {run.run_id}; stored: "
                            f"{', '.join(names) or 'none (train one with `zoo dict train`)'}")
    return load_named(run, record_name)


def check_feature(dictionary: Dictionary, feature) -> int:
    """`feature` as an index of the dictionary; an ArgumentError naming its width otherwise."""
    width = dictionary.width
    if isinstance(feature, bool) or not isinstance(feature, (int, np.integer)) \
            or not 0 <= feature < width:
        raise ArgumentError(f"feature {feature!r} is out of range: {dictionary.record['name']} has "
                            f"{width} features, 0..{width - 1}")
    return int(feature)


def top_contexts(run: RunStore, dictionary: Dictionary, feature: int, *, n: int = TOP) -> list[Context]:
    """The `n` rows (at most TOP) of the dictionary's own data where `feature` is largest,
    largest first (ties: the earlier row), only rows where it is active."""
    feature = check_feature(dictionary, feature)
    scan = _scan(run, dictionary)
    values = scan.top_values[:, feature]
    rows = scan.top_rows[:, feature]
    return [_context(run, scan, int(row), float(value))
            for value, row in zip(values[:n].tolist(), rows[:n].tolist()) if value > 0]


def activation_density(run: RunStore, dictionary: Dictionary, feature: int) -> tuple[float, int, int]:
    """(the stored density of `feature`, the rows it is active on, the rows) on the dictionary's
    data, the rows counted on the re-collected activations."""
    feature = check_feature(dictionary, feature)
    scan = _scan(run, dictionary)
    return float(dictionary.density[feature]), int(scan.fired[feature]), scan.rows


def logit_effect(run: RunStore, dictionary: Dictionary, feature: int, *, n: int = 10) -> LogitEffect:
    """What the decoder direction W_dec[f] writes to the output, directly.

    Token models: W_U @ W_dec[f], W_U the unembedding (lm_head / embed_out weight), one value per
    token. The final LayerNorm is ignored, as TransformerLens' logit lens does, and so is every
    layer after the site (the direct path only). A site read at a Linear's input (an MLP's hidden
    neurons) is first written through that Linear (W_out). The superposition model:
    W^T W_dec[f], which output features the direction writes to (before b and the ReLU)."""
    feature = check_feature(dictionary, feature)
    readout, labels, space, how = _readout(run, dictionary)
    values = readout @ dictionary.W_dec.detach()[feature].double()
    count = min(n, len(values))
    order = torch.argsort(values, descending=True, stable=True).tolist()

    def listed(ids):
        return tuple((i, labels(i), float(values[i])) for i in ids)

    return LogitEffect(values.float(), listed(order[:count]), listed(order[::-1][:count]), space, how)


def lineage_dictionaries(run: RunStore, own: dict) -> list[dict]:
    """One record per step among the run's dictionaries on the same site, kind and width as the
    record `own` (itself at its own step; elsewhere the one with the same settings and the same
    kind of data, else the same settings, else the first by name)."""
    by_step: dict[int, list[dict]] = {}
    for record in list_run_dicts(run):
        if (record["site"], record["config"]["kind"], record["config"]["width"]) == \
                (own["site"], own["config"]["kind"], own["config"]["width"]):
            by_step.setdefault(record["step"], []).append(record)
    chosen = []
    for step in sorted(by_step):
        records = by_step[step]
        mine = [r for r in records if r["name"] == own["name"]]
        alike = [r for r in records if r["config"] == own["config"]]
        chosen.append((mine or [r for r in alike if r["data"]["source"] == own["data"]["source"]]
                       or alike or records)[0])
    return chosen


def feature_lineage(run: RunStore, dictionary: Dictionary, feature: int, *,
                    threshold: float = DEFAULT_THRESHOLD) -> tuple[FeatureLineage | None, str]:
    """The feature's lineage across the run's dictionaries on its site (lineage.track), and
    why there is none where there is not (one dictionary only; a dead feature)."""
    feature = check_feature(dictionary, feature)
    records = lineage_dictionaries(run, dictionary.record)
    if len(records) < 2:
        return None, (f"no other dictionary of {run.run_id} on {dictionary.record['site']} "
                      f"({dictionary.record['config']['kind']}{dictionary.width}): nothing to follow")
    step = dictionary.record["step"]
    table = lineage_table(run, records, threshold=threshold)
    rows = table.to_pylist()
    mine = [r for r in rows if r["step"] == step and r["feature"] == feature]
    if not mine:
        return None, "a dead feature (never active on its data) is in no lineage"
    lineage = mine[0]["lineage"]
    names = {r["step"]: r["name"] for r in records}
    points = tuple(LineagePoint(r["step"], r["feature"],
                                None if np.isnan(r["cosine"]) else float(r["cosine"]),
                                float(r["density"]), names[r["step"]])
                   for r in rows if r["lineage"] == lineage)
    steps = tuple(sorted(names))
    after = [s for s in steps if s > points[-1].step]
    return FeatureLineage(lineage, mine[0]["born"], after[0] if after else None, points, steps,
                          threshold), ""


def lineage_table(run: RunStore, records: list[dict], *, threshold: float = DEFAULT_THRESHOLD):
    """lineage.track of the dictionaries `records` (one per step, as lineage_dictionaries gives
    them), kept per process: a page of each of their features reads it again."""
    names = tuple(r["name"] for r in records)
    key = (run.store.url, run.run_id.key, names, threshold,
           tuple(_key(run, {"name": n})[3] for n in names))
    if key not in _TRACKS:
        loaded = [load_named(run, n) for n in names]
        table = track([d.record["step"] for d in loaded], [d.W_dec.detach().numpy() for d in loaded],
                      [d.density.numpy() for d in loaded], threshold=threshold)
        _remember(_TRACKS, key, table)
    return _TRACKS[key]


def describe_feature(run: RunStore, record_name: str, feature: int, *, contexts: int = TOP,
                     threshold: float = DEFAULT_THRESHOLD) -> FeatureView:
    """Everything above about feature `feature` of the dictionary `record_name` of `run`."""
    dictionary = find_dictionary(run, record_name)
    feature = check_feature(dictionary, feature)
    density, fires_on, rows = activation_density(run, dictionary, feature)
    lineage, note = feature_lineage(run, dictionary, feature, threshold=threshold)
    try:
        effect = logit_effect(run, dictionary, feature)
    except ArgumentError:  # a site that is not the residual stream's width, nor a Linear's input
        effect = None
    record = dictionary.record
    return FeatureView(record_name, record["step"], record["site"], feature, dictionary.width,
                       density, fires_on, rows, _scan(run, dictionary).reproduced,
                       top_contexts(run, dictionary, feature, n=contexts), effect, lineage, note)


# --- the scan: every feature's top rows, in one pass over the re-collected activations ---------
@dataclass
class _Scan:
    top_values: torch.Tensor  # [TOP, width], descending per feature
    top_rows: torch.Tensor  # [TOP, width]: row indices
    fired: torch.Tensor  # [width]: rows active on
    rows: int
    reproduced: bool
    samples: np.ndarray  # per row, as Activations keeps them
    positions: np.ndarray
    steps: np.ndarray
    per: int  # rows per input (sequence length; 1 for feature vectors)
    heldout: torch.Tensor | None  # the held-out inputs, when the data window is held out
    hidden: bool  # the superposition model


_SCANS: dict[tuple, _Scan] = {}
_READOUTS: dict[tuple, tuple] = {}
_TRACKS: dict[tuple, object] = {}


def _key(run: RunStore, record: dict) -> tuple:
    tensors = run.dictionary_record(record["name"])["tensors"]
    digest = hashlib.sha256(json.dumps(tensors, sort_keys=True).encode()).hexdigest()
    return run.store.url, run.run_id.key, record["name"], digest


def _remember(cache: dict, key, value):
    if len(cache) >= _KEPT:
        cache.pop(next(iter(cache)))
    cache[key] = value
    return value


def _model(run: RunStore, record: dict):
    """The model at the dictionary's step, checked to be the weights it was trained on."""
    from zoo.registry.loading import open_snapshot
    from zoo.registry.snapshots import run_snapshot

    folder = run_snapshot(run, record["step"])
    source = json.loads((folder / "zoo_snapshot.json").read_text()).get("source_id")
    if source != record["weights"]["source_id"]:
        raise ZooError(f"{run.run_id} step {record['step']} is no longer the weights dictionary "
                       f"{record['name']} was trained on (the run was retrained in place?): its "
                       f"contexts cannot be gathered again")
    return open_snapshot(folder)[0]


def _site(record: dict) -> Site:
    return Site(record["site"], record["module"], record["capture"], record["d_in"])


def _gather(run: RunStore, model, site: Site, window: dict) -> Activations:
    """The activations the dictionary trained on, gathered as train_dict gathers them."""
    return gather_activations(run, model, site, DataWindow.from_record(window))


def _heldout_inputs(run: RunStore) -> torch.Tensor:
    """Every held-out input of the run, as train_dict's data="heldout" reads them."""
    return heldout_inputs(run, rows=None)


def _scan(run: RunStore, dictionary: Dictionary) -> _Scan:
    record = dictionary.record
    key = _key(run, record)
    if key in _SCANS:
        return _SCANS[key]
    model = _model(run, record)
    site, window = _site(record), record["data"]
    heldout = _heldout_inputs(run) if window["source"] == "heldout" else None
    with held_thread_count():
        torch.set_num_threads(int(record.get("training", {}).get("threads",
                                                                 torch.get_num_threads())))
        activations = _gather(run, model, site, window)
        width, values = dictionary.width, activations.values
        best_values = torch.zeros(0, width)
        best_rows = torch.zeros(0, width, dtype=torch.long)
        fired = torch.zeros(width)
        with torch.no_grad():
            for start in range(0, values.shape[0], CHUNK):
                z = dictionary.encode(values[start:start + CHUNK])
                fired += (z > 0).sum(dim=0).float()
                rows = torch.arange(start, start + z.shape[0]).unsqueeze(1).expand_as(z)
                merged = torch.cat([best_values, z])
                order = torch.sort(merged, dim=0, descending=True, stable=True).indices[:TOP]
                best_values = merged.gather(0, order)
                best_rows = torch.cat([best_rows, rows]).gather(0, order)
    rows = values.shape[0]
    hidden = site.name == HIDDEN
    per = 1 if hidden else int(np.bincount(activations.positions).size)
    scan = _Scan(best_values, best_rows, fired, rows,
                 bool(torch.equal(fired / rows, dictionary.density)), activations.samples,
                 activations.positions, activations.steps, per, heldout, hidden)
    return _remember(_SCANS, key, scan)


def _context(run: RunStore, scan: _Scan, row: int, value: float) -> Context:
    from zoo.registry.batches import batch_values, placements_of, run_data
    from zoo.store.lineage import batch_owner

    sample, position, step = int(scan.samples[row]), int(scan.positions[row]), int(scan.steps[row])
    held_out = sample < 0
    corpus, index = (None, None) if held_out else run_data(batch_owner(run, step))
    if scan.hidden:
        vector = (scan.heldout[row // scan.per].numpy() if held_out
                  else batch_values(corpus, index, np.array([sample]))[0])
        nonzero = tuple((int(i), float(vector[i])) for i in np.flatnonzero(vector))
        return Context(value, sample, position, step, None, features=nonzero)
    if held_out:
        from zoo.store.corpora import open_corpus

        corpus = open_corpus(run.store, run.read_json("run.json")["corpus_fingerprint"])
        tokens = scan.heldout[row // scan.per].tolist()
        document, steps = None, None
    else:
        tokens = corpus.samples([sample])[0].tolist()
        documents = corpus.documents_of(sample)
        eos_before = sum(t == corpus.eos_id for t in tokens[:position])
        document = documents[min(eos_before, len(documents) - 1)]
        steps = tuple(sorted({s for s, _ in placements_of(
            run.run_id.model_name, seed=run.run_id.seed, sample=sample, store=run.store,
            branch=run.run_id.branch or None)}))
    return Context(value, sample, position, step, document,
                   before=corpus.decode(tokens[max(0, position - BEFORE):position]),
                   token=corpus.decode(tokens[position:position + 1]),
                   after=corpus.decode(tokens[position + 1:position + 1 + AFTER]), steps_of=steps)


def _readout(run: RunStore, dictionary: Dictionary):
    """(matrix from a decoder direction to the output space, label of an output index, space,
    how), kept per (dictionary, weights)."""
    record = dictionary.record
    key = (run.store.url, run.run_id.key, record["name"], record["weights"]["source_id"])
    if key in _READOUTS:
        return _READOUTS[key]
    model = _model(run, record)
    with torch.no_grad():
        if record["site"] == HIDDEN:  # h = W x, out = ReLU(W^T h + b): W^T
            readout = model.W.detach().double().T
            how = ("W\u1d40 W_dec[f]: what the direction adds to each output feature before b "
                   "and the ReLU")
            found = (readout, lambda i: f"feature {i}", "output features", how)
        else:
            from zoo.store.corpora import open_corpus

            unembed = model.get_output_embeddings().weight.detach().double()  # [vocab, d_model]
            how = "W_U W_dec[f] (the unembedding; the final LayerNorm and later layers ignored)"
            module = dict(model.named_modules())[record["module"]]
            if record["capture"] == "input" and isinstance(module, torch.nn.Linear):
                unembed = unembed @ module.weight.detach().double()  # through W_out first
                how = f"W_U W_out W_dec[f] (W_out: {record['module']}; " + how.split("(", 1)[1]
            if unembed.shape[1] != record["d_in"]:
                raise ArgumentError(f"site {record['site']} has width {record['d_in']}, not the "
                                    f"residual stream's {unembed.shape[1]}: no direct logit effect")
            corpus = open_corpus(run.store, run.read_json("run.json")["corpus_fingerprint"])
            found = (unembed, lambda i: corpus.decode([i]), "tokens", how)
    return _remember(_READOUTS, key, found)
