"""Evaluation sweeps: run metrics over every (size, seed, stored step) of a family, resumably.

    report = evaluate_family("tiny", metrics=["loss", "icl", "induction", my_metric], store=...)

Built-in metrics (zoo.eval_metrics):
- `loss` — mean next-token loss on the family's HELD-OUT set (zoo.heldout: documents of the same
  source that the training corpus does not contain, tokenized with the run's tokenizer; checked
  disjoint from every training document). Training walks every sample of its corpus, so no slice of
  the training corpus would be honest.
- `icl` — in-context learning score on the same held-out samples (late-context loss minus early).
- `induction` — per-head induction score on repeated random tokens: a dict, stored as fields
  "L<layer>H<head>" and "max" (columns `induction.L0H1`, `induction.max` in zoo.tables).
- `repetition` — loss on the first vs the second copy of [r, r] (`.drop` in nats). Both draw the random tokens from the
  tokens the run's corpus contains (Corpus.seen_tokens): a token that never occurs in training
  has an untrained embedding, and a small corpus leaves many such ids (unused byte tokens).

Probes are fixed by the run's lineage: every built-in metric draws its probes (the held-out set,
the random-token pool, a task's splits, a feature draw) from the corpus of the first run of the
run's line (zoo.store.lineage.root_of), so a branch — even one trained on other data — is measured
with its root parent's probes and reads exactly its parent's values where their weights agree
(its branch point). Each result row records that corpus (`probes`, zoo.eval_results).
- any user function `f(model, tokenizer) -> float | dict[str, float]`, named by its __name__ or
  by a mapping {name: f}; called in eval mode under torch.no_grad().

Batched: each checkpoint's tensors are decoded once and loaded with load_state_dict into one model
object per architecture (no from_pretrained, no snapshot folder), and every requested metric runs
on it. Results go to `evals/<family>/` in the store (zoo.eval_results) as they are computed; a
re-run skips every (size, seed, step, metric) already there. NaN results are recorded as NaN and
counted in the report, never dropped.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from zoo_common.progress import progress as progress_bar
from zoo_common.arguments import whole_number
from zoo_common.errors import ZooError
from zoo.store.corpora import open_corpus
from zoo.eval.metrics import (
    METRICS,
    TOKEN_METRICS,
    heldout_loss,
    icl_score,
    induction_score,
    repetition_loss,
)
from zoo.eval.neuron_metrics import neuron_measures
from zoo.eval.superposition_metrics import superposition_measures
from zoo.eval.task_metrics import fourier_key_share, task_accuracy
from zoo.eval.results import ResultsLog
from zoo.eval.heldout import DEFAULT_SAMPLES, HeldOut, build_heldout
from zoo.config.names import RunId, check_seed, labelled, split_branch
from zoo.registry.snapshot_folder import weights_id
from zoo.store.lineage import root_of
from zoo.store.run_store import RunStore
from zoo.store.store import Store

HELDOUT_METRICS = ("loss", "icl", "neurons")
RESERVED = {
    "family",
    "size",
    "seed",
    "step",
    "train_loss",
    "lr",
    "grad_norm",
    "tokens",
    "wall_time",
    "heldout",  # metrics_table's heldout.METRIC columns
}
INDUCTION_MAX_LEN = 64
FLUSH_EVERY = 16  # checkpoints per results part: a killed evaluation loses at most this many


@dataclass(frozen=True)
class EvalReport:
    """What an evaluation did; nan_results lists every NaN of the asked metrics (size, seed, step,
    metric, field), old and new: NaN usually means a diverged run or a broken metric."""

    family: str
    metrics: tuple[str, ...]
    evaluated: int  # checkpoints loaded and evaluated now
    skipped: int  # checkpoints whose asked metrics were all done already
    rows_written: int
    nan_results: tuple[tuple, ...]
    heldout: str  # how the held-out set was chosen ("" when no held-out metric was asked)
    probes: str = ""  # which corpus the built-in metrics' probes came from, in words

    def summary(self) -> str:
        lines = [
            (
                f"{self.family}: evaluated {self.evaluated} checkpoint(s), skipped {self.skipped} "
                f"already done; {self.rows_written} result row(s) written; metrics: {', '.join(self.metrics)}"
            )
        ]
        if self.heldout:
            lines.append(f"held-out set: {self.heldout}")
        if self.probes:
            lines.append(f"probes: {self.probes}")
        if self.nan_results:
            shown = "; ".join(
                f"{size} seed {seed} step {step} {metric}{'.' + field if field else ''}"
                for size, seed, step, metric, field in self.nan_results[:10]
            )
            more = f" and {len(self.nan_results) - 10} more" if len(self.nan_results) > 10 else ""
            lines.append(f"WARNING: {len(self.nan_results)} result(s) are NaN: {shown}{more}")
        else:
            lines.append("NaN results: 0")
        return "\n".join(lines)


def resolve_metrics(metrics) -> dict[str, Callable | str]:
    """Names and callables -> {name: "builtin" name or user function}; errors list the choices."""
    if isinstance(metrics, (str, bytes)) or callable(metrics):
        metrics = [metrics]
    if not isinstance(metrics, (Mapping, Sequence, set, frozenset)):
        raise ZooError(f"metrics is a name, a function, or a list / dict of them; got {metrics!r}")
    items = list(metrics.items()) if isinstance(metrics, Mapping) else [(None, m) for m in metrics]
    if not items:
        raise ZooError(f"no metric asked; built-in metrics: {', '.join(METRICS)}")
    resolved: dict[str, Callable | str] = {}
    for name, metric in items:
        if isinstance(metric, str):
            if metric not in METRICS:
                raise ZooError(
                    f"unknown metric {metric!r}; built-in metrics: {', '.join(METRICS)} (or pass "
                    "your own function f(model, tokenizer) -> float | dict in Python)"
                )
            name = name or metric
        elif callable(metric):
            given = name is not None
            name = name or getattr(metric, "__name__", "")
            if not isinstance(name, str) or not name.isidentifier():
                raise ZooError(
                    f"metric name {name!r} is not a Python identifier (letters, digits, '_', not "
                    "starting with a digit); rename it" if given else
                    f"a user metric needs a name to be stored under; {metric!r} has none: pass "
                    "metrics={'my_name': f} or use a def-function"
                )
            if name in METRICS:
                raise ZooError(
                    f"user metric {name!r} shadows the built-in metric of that name; rename it"
                )
        else:
            raise ZooError(
                f"a metric is a name ({', '.join(METRICS)}) or a function, got {metric!r}"
            )
        if name in RESERVED or "." in name:
            raise ZooError(
                f"metric name {name!r} is taken by a table column or has a '.'; rename it"
            )
        resolved[name] = metric
    return resolved


def family_runs(store: Store, family: str, *, sizes=None, seeds=None) -> list:
    """The stored runs of a family (optionally some sizes / seeds); errors list what exists.
    `family@label` is the family's branch `label`: the runs branched under that label."""
    base, label = split_branch(family)
    runs = [r for r in store.runs() if r.family == base and r.branch == label]
    if not runs:
        families = sorted({r.family + (f"@{r.branch}" if r.branch else "") for r in store.runs()})
        named, _, size = base.rpartition("-")
        model = labelled(named, label) if named else ""
        hint = (f" ({family} is a model: its family is {model}, with --sizes {size} / sizes=[{size!r}])"
                if model in families else "")
        raise ZooError(
            f"no family {family!r} in store {store.url}; families: {', '.join(families) or 'none'}"
            + hint
        )
    if isinstance(sizes, str):
        sizes = [sizes]
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        seeds = [seeds]
    for wanted, attr in ((sizes, "size"), (seeds, "seed")):
        if wanted is None:
            continue
        if isinstance(wanted, (str, bytes)) or not hasattr(wanted, "__iter__"):
            raise ZooError(f"{attr}s must be a list of {attr}s, got {wanted!r}")
        wanted = [check_seed(w) for w in wanted] if attr == "seed" else list(wanted)
        if wanted:
            have = sorted({getattr(r, attr) for r in runs})
            unknown = [w for w in wanted if w not in have]
            if unknown:
                raise ZooError(
                    f"family {family} has no {attr} {', '.join(map(str, unknown))}; "
                    f"{attr}s: {', '.join(map(str, have))}"
                )
            runs = [r for r in runs if getattr(r, attr) in wanted]
    return runs


class ReusedModels:
    """One model object per architecture config, reloaded in place for every checkpoint."""

    def __init__(self) -> None:
        self._by_config: dict[str, torch.nn.Module] = {}

    def load(self, hf_config: dict, tensors: dict[str, torch.Tensor], what: str) -> torch.nn.Module:
        from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

        from zoo.models.own_types import register_own_models, takes_tokens

        register_own_models()  # the Auto classes must know our model types for such a config
        key = json.dumps(hf_config, sort_keys=True)
        model = self._by_config.get(key)
        if model is None:
            settings = dict(hf_config)
            config = AutoConfig.for_model(settings.pop("model_type"), **settings)
            model = (AutoModelForCausalLM.from_config(config, attn_implementation="eager")
                     if takes_tokens(config.model_type) else AutoModel.from_config(config)).eval()
            self._by_config[key] = model
        missing, unexpected = model.load_state_dict(tensors, strict=False)
        tied = set(getattr(model, "_tied_weights_keys", None) or ())
        if unexpected or [k for k in missing if k not in tied]:
            raise ZooError(
                f"{what}: checkpoint does not fit its recorded architecture (missing "
                f"{list(missing)[:5]}, unexpected {list(unexpected)[:5]}); run `zoo verify`"
            )
        return model


def _as_fields(value, name: str, what: str) -> dict[str, float]:
    """A metric's result -> {field: float}; "" is the field of a plain number."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, numbers.Real) and not isinstance(value, bool):  # numpy scalars too
        return {"": float(value)}
    if isinstance(value, Mapping) and value:
        fields = {}
        for key, item in value.items():
            if isinstance(item, torch.Tensor) and item.numel() == 1:
                item = item.item()
            if (
                not isinstance(key, str)
                or not key
                or isinstance(item, bool)
                or not isinstance(item, numbers.Real)
            ):
                break
            fields[key] = float(item)
        else:
            return fields
    raise ZooError(
        f"metric {name!r} on {what} returned {type(value).__name__} {str(value)[:80]!r}; a metric "
        "returns a float or a non-empty dict of str -> float"
    )


def _induction_length(model, pool_size: int) -> int:
    """Length of r in the [r, r] tests: up to 64 tokens, as the context and token pool allow."""
    limit = getattr(model.config, "max_position_embeddings", None) or 2 * INDUCTION_MAX_LEN
    return max(1, min(INDUCTION_MAX_LEN, limit // 2, pool_size))


def _induction_fields(model, corpus) -> dict[str, float]:
    pool = corpus.seen_tokens()
    scores = induction_score(model, vocab_size=corpus.vocab_size, token_pool=pool, seed=0,
                             seq_len=_induction_length(model, len(pool)), n_sequences=16)
    fields = {
        f"L{layer}H{head}": float(scores[layer, head])
        for layer in range(scores.shape[0])
        for head in range(scores.shape[1])
    }
    return {"max": float(scores.max()), **fields}


def _check_metrics_fit(chosen: dict, corpus, family: str) -> None:
    """Token metrics on feature vectors, or the superposition measures on tokens: one clear
    error before any work."""
    drawn = getattr(corpus, "drawn", False)
    wrong = [n for n, m in chosen.items() if (m in TOKEN_METRICS) == drawn and isinstance(m, str)
             and (drawn or m == "superposition")]
    if wrong and drawn:
        raise ZooError(f"{family} reads feature vectors (builtin:sparse_features), not tokens: "
                       f"metric {', '.join(wrong)} is for language models; its metric is "
                       f"`superposition` (or your own f(model, tokenizer) with tokenizer None)")
    if wrong:
        raise ZooError(f"{family} reads tokens: the superposition measures are for the "
                       f"superposition model (architecture superposition)")


def _run_metric(name, metric, model, *, tokenizer, corpus, heldout: HeldOut | None, what: str,
                data_seed: int):
    drawn = getattr(corpus, "drawn", False)
    if drawn and metric in TOKEN_METRICS:
        raise ZooError(f"{what} reads feature vectors (builtin:sparse_features), not tokens: metric "
                       f"{metric!r} is for language models; its metric is `superposition`")
    if not drawn and metric == "superposition":
        raise ZooError(f"{what}: the superposition measures are for the superposition model "
                       f"(architecture superposition); this run reads tokens")
    if metric == "superposition":
        with torch.no_grad():
            return superposition_measures(model, corpus)
    if metric == "accuracy":
        return task_accuracy(model, corpus, data_seed=data_seed)
    if metric == "fourier":
        p = corpus.meta.get("source_metadata", {}).get("p")
        if p is None:
            raise ZooError(f"{what}: the fourier progress measure is for builtin:modular runs; "
                           f"this corpus is {corpus.meta.get('source')!r}")
        return fourier_key_share(model, p)
    if metric == "loss":
        return {"": heldout_loss(model, torch.from_numpy(heldout.tokens))}
    if metric == "icl":
        return {"": icl_score(model, torch.from_numpy(heldout.tokens))}
    if metric == "neurons":
        with torch.no_grad():
            return neuron_measures(model, torch.from_numpy(heldout.tokens))
    if metric == "induction":
        return _induction_fields(model, corpus)
    if metric == "repetition":
        pool = corpus.seen_tokens()
        return repetition_loss(model, vocab_size=corpus.vocab_size, token_pool=pool,
                               seq_len=_induction_length(model, len(pool)))
    model.eval()
    versions = [p._version for p in model.parameters()]
    try:
        with torch.no_grad():
            value = metric(model, tokenizer)
    except ZooError:
        raise
    except Exception as exc:
        raise ZooError(f"metric {name!r} failed on {what}: {type(exc).__name__}: {exc}") from exc
    if [p._version for p in model.parameters()] != versions:  # every in-place write counts
        raise ZooError(f"metric {name!r} changed the model's weights in place on {what}; the "
                       "metrics after it would see the changed model. Measure on a copy "
                       "(copy.deepcopy(model)) instead")
    return _as_fields(value, name, what)


def evaluate_family(
    family: str,
    metrics: Sequence | Mapping | str | Callable = ("loss",),
    *,
    store: str | Store | None = None,
    sizes: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    heldout: str | None = None,
    heldout_samples: int = DEFAULT_SAMPLES,
    progress: bool = True,
    recompute: bool = False,
    branch: str | None = None,
) -> EvalReport:
    """Evaluate every (size, seed, stored step) of `family`; finished cells are skipped (a cell is
    finished when it was measured on the same stored weights and probes, and for loss / icl on
    the same held-out set). `recompute=True` evaluates every cell again, e.g. after changing a
    metric's code under the same name; the new rows supersede the old. `branch=LABEL` (or
    `family@LABEL`) evaluates the family's branch LABEL, probed as its parent (module docstring)."""
    from transformers import AutoTokenizer

    from zoo.store.catalog import open_store

    store = open_store(store)
    family = labelled(family, branch)
    heldout_samples = whole_number(heldout_samples, "heldout_samples", minimum=1)
    chosen = resolve_metrics(metrics)
    runs = [store.run(r) for r in family_runs(store, family, sizes=sizes, seeds=seeds)]
    records = {r.run_id: r.read_json("run.json") for r in runs}
    roots = {r.run_id: root_of(r) for r in runs}
    probes = {rid: probe_corpus(roots[rid], records[rid] if roots[rid].run_id == rid else None)
              for rid in records}
    corpora, heldouts, tokenizers = {}, {}, {}
    for fp in probes.values():
        if fp not in corpora:
            corpora[fp] = open_corpus(store, fp)
            _check_metrics_fit(chosen, corpora[fp], family)
            if any(chosen[n] in HELDOUT_METRICS for n in chosen):
                heldouts[fp] = build_heldout(
                    corpora[fp], n_samples=heldout_samples, heldout=heldout
                )
    heldout_of = {
        n: heldouts[fp].fingerprint
        for n in chosen
        if chosen[n] in HELDOUT_METRICS
        for fp in heldouts
    }
    if len(heldouts) > 1:
        raise ZooError(
            f"the runs of {family} use {len(heldouts)} different corpora; evaluate them per size"
        )
    if not isinstance(recompute, bool):
        raise ZooError(f"recompute must be True or False, got {recompute!r}")
    weights_of = {(run.run_id.size, run.run_id.seed, step): weights_id(run.checkpoint_manifest(step))
                  for run in runs for step in run.checkpoint_steps()}
    # a built-in metric's row counts only on the probes of the run's line; rows from before the
    # `probes` column were measured on the run's own corpus, which is the same for most runs
    probes_of = {(rid.size, rid.seed, n): frozenset(
        {probes[rid]} | ({""} if probes[rid] == records[rid]["corpus_fingerprint"] else set()))
        if isinstance(chosen[n], str) else frozenset({""}) for rid in records for n in chosen}
    log = ResultsLog(store, family)
    done = set() if recompute else log.done(heldout_of, weights_of, probes_of)
    todo, skipped = [], 0
    for run in runs:
        rid: RunId = run.run_id
        for step in run.checkpoint_steps():
            missing = [n for n in chosen if (rid.size, rid.seed, step, n) not in done]
            if missing:
                todo.append((run, step, missing))
            else:
                skipped += 1
    models, rows = ReusedModels(), 0
    bar = progress_bar(total=len(todo), desc=f"eval {family}", unit="ckpt", enabled=progress)
    try:
        for k, (run, step, missing) in enumerate(todo):
            rid, record = run.run_id, records[run.run_id]
            fp = probes[rid]
            what = f"{rid} step {step}"
            model = models.load(record["hf_config"], run.read_checkpoint(step).tensors, what)
            needs_tokenizer = (any(callable(chosen[n]) for n in missing)
                               and corpora[fp].tokenizer_dir is not None)
            if needs_tokenizer and fp not in tokenizers:
                tokenizers[fp] = AutoTokenizer.from_pretrained(str(corpora[fp].tokenizer_dir))
            for name in missing:
                fields = _run_metric(
                    name,
                    chosen[name],
                    model,
                    tokenizer=tokenizers.get(fp),
                    corpus=corpora[fp],
                    heldout=heldouts.get(fp),
                    what=what,
                    data_seed=record["data_seed"],
                )
                log.add(rid.size, rid.seed, step, name, fields, heldout_of.get(name, ""),
                        weights_of[(rid.size, rid.seed, step)],
                        probes=fp if isinstance(chosen[name], str) else "")
                rows += len(fields)
            bar.update(1)
            if (k + 1) % FLUSH_EVERY == 0:
                log.flush()
    finally:
        log.flush()  # whatever finished is kept, also when a metric fails halfway
        bar.close()
    table = log.read()
    chosen_runs = {(run.run_id.size, run.run_id.seed) for run in runs}  # sizes/seeds as resolved
    nan = [
        (size, seed, step, metric, field)
        for size, seed, step, metric, field, value in zip(
            *(
                table.column(c).to_pylist()
                for c in ("size", "seed", "step", "metric", "field", "value")
            )
        )
        if metric in chosen
        and (value is None or math.isnan(value))
        and (size, seed) in chosen_runs
    ]
    rule = next(iter(heldouts.values())).rule if heldouts else ""
    return EvalReport(family, tuple(chosen), len(todo), skipped, rows, tuple(nan), rule,
                      _probe_words(roots, probes))


def probe_corpus(run: RunStore, record: dict | None = None) -> str:
    """The fingerprint of the corpus `run`'s built-in metrics draw their probes from: its line's
    first run's (zoo.store.lineage.root_of), so a branch on other data is probed as its parent.
    `record`: the root's run.json when the caller has read it already."""
    root = root_of(run)
    if record is None or root.run_id != run.run_id:
        record = root.read_json("run.json")
    return record["corpus_fingerprint"]


def _probe_words(roots: dict, probes: dict) -> str:
    """Which corpus the probes came from, for the report: the runs' own, or their roots'."""
    parts = []
    for fp in sorted(set(probes.values())):
        mine = [rid for rid in roots if probes[rid] == fp]
        firsts = sorted({roots[rid].run_id for rid in mine})
        if firsts == sorted(mine):
            parts.append(f"the runs' own corpus {fp[:16]}")
        else:
            parts.append(f"corpus {fp[:16]} of {', '.join(r.key for r in firsts)}, the first run "
                         f"of the branch's line (a branch is probed as its parent, whatever data "
                         f"it trained on)")
    return "; ".join(parts)
