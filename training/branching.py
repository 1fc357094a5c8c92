"""Counterfactual branches: a run's exact state at any step, trained on with one thing changed.

    zoo.branch("induction-attn2l", seed=1, from_step=300, until_step=800, label="norepeats",
               drop_documents=ids)              # seed="all": every seed of the model alike

A branch starts from its parent's exact state at step N: the parent's keyframe before N, replayed
to N with the one training step (so any step works, stored or not). It then trains to its
until-step M (default: the parent's last step) with the same step function, schedule and
checkpoint steps, and is stored beside its parent as a run of its own (`seed-S@LABEL`) whose
run.json names its parent, its branch point and its interventions. Its blobs are the store's
content-addressed blobs, so whatever equals the parent's is stored once.

The interventions (each recorded in the branch's run.json):
- dropped samples / documents: never trained on after N (or in a window N+1..`drop_until`); a
  batch slot that would have held one takes the next sample of the order
  (data_index/branch_order.py), so batches stay full;
- other data (`replace_data`, any source or mix, prepared with the parent's tokenizer);
- hyperparameters from N: `lr_scale`, `settings={"optimizer.weight_decay": ...}` (also
  optimizer.lr, optimizer.clip);
- `reinit`: parameters (glob patterns over parameter names) drawn afresh at N from the
  architecture's own initialisation (the named stream "reinit"), their AdamW moments zeroed.
A branch with none reproduces its parent bit for bit (tests/test_branches.py): that is what gives
every other branch's difference its meaning. A branch's step N is its state after the
intervention; steps before N are its parent's (zoo.store.lineage).
"""
from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import os
import socket
import time
from collections.abc import Iterable

import numpy as np
import torch

from zoo_common.arguments import whole_number
from zoo_common.errors import ZooError
from data_index import Corpus
from data_index.branch_order import BranchOrder
from data_index.step_index import StepIndex
from training.background_writer import BackgroundWriter
from training.loop import Plan, RunOutcome, _loop, _write_step
from zoo import environment
from zoo.config.checkpoint_policy import checkpoint_steps, keyframe_steps
from zoo.config.names import check_branch
from zoo.config.run_config import RunConfig
from zoo.config.seeds import derive_seed
from zoo.engine import rng_state
from zoo.engine.step_replay import restore, step_to
from zoo.engine.training_state import TrainingState, restore_state
from zoo.models.build import build_model
from zoo.store.catalog import list_models, open_run, open_store
from zoo.store.corpora import ensure_corpus, open_corpus
from zoo.store.lineage import branch_record
from zoo.store.run_store import RunStore
from zoo.store.store import Store

SETTABLE = ("optimizer.lr", "optimizer.weight_decay", "optimizer.clip")


@dataclasses.dataclass(frozen=True)
class Interventions:
    """What a branch changes at its branch point; empty: a null branch (its parent, bit for bit)."""

    drop_samples: tuple[int, ...] = ()
    drop_documents: tuple[str, ...] = ()
    replace_data: str | None = None
    lr_scale: float | None = None
    settings: tuple[tuple[str, float], ...] = ()
    reinit: tuple[str, ...] = ()
    reinit_seed: int = 0
    drop_until: int | None = None  # dropped in steps N+1..drop_until only (None: to the end)


def branch(name: str, *, seed: int | str, from_step: int, label: str,
           until_step: int | None = None, store: str | os.PathLike | Store | None = None,
           parent: str | None = None, drop_samples: Iterable[int] | None = None,
           drop_documents: Iterable[str] | None = None, replace_data: str | None = None,
           lr_scale: float | None = None, settings: dict | None = None,
           reinit: Iterable[str] | None = None, reinit_seed: int = 0,
           drop_until: int | None = None, resume: bool = False, device: str = "cpu", progress: bool = True,
           stop_after_step: int | None = None, hold_after_step: int | None = None):
    """Branch (name, seed) — or its branch `parent` — at `from_step` as branch `label`; returns the
    RunOutcome (a list of them for seed="all": every seed of the model, alike).

    An existing label is refused unless `resume=True`, which goes on from the branch's last
    keyframe (a killed branch resumes like any run) when the interventions are the same. An
    intervention given empty (drop_samples=[]) is refused: leave it out for a null branch.
    Every read takes `branch=label` afterwards (zoo.load, zoo.batch, zoo.replay, zoo.metrics...).
    """
    store = open_store(store)
    check_branch(label)
    if not label:
        raise ZooError("a branch needs a label (--label): lower-case letters, digits, '_', '.', '-'")
    drop_samples, drop_documents = _listed(drop_samples), _listed(drop_documents)
    reinit = [reinit] if isinstance(reinit, str) else _listed(reinit)
    for what, given in (("drop_samples", drop_samples), ("drop_documents", drop_documents),
                        ("reinit", reinit), ("settings", settings)):
        if given is not None and len(given) == 0:
            raise ZooError(f"branch {label!r}: {what} is given but empty, so it changes nothing; "
                           f"give its ids / names, or leave it out for a null branch")
    wanted = _interventions(drop_samples or (), drop_documents or (), replace_data, lr_scale,
                            settings, reinit or (), reinit_seed)
    if drop_until is not None:
        if not (wanted.drop_samples or wanted.drop_documents):
            raise ZooError("drop_until ends a window of dropped samples: give drop_samples or "
                           "drop_documents too")
        wanted = dataclasses.replace(wanted, drop_until=whole_number(drop_until, "drop_until"))
    options = dict(from_step=from_step, label=label, until_step=until_step, store=store,
                   parent=parent, interventions=wanted, resume=resume, device=device,
                   progress=progress, stop_after_step=stop_after_step,
                   hold_after_step=hold_after_step)
    if seed == "all":
        seeds = _seeds_of(name, store)
        return [_branch_one(name, seed=s, **options, note=f"seed {s} ({k}/{len(seeds)})")
                for k, s in enumerate(seeds, start=1)]
    return _branch_one(name, seed=seed, **options, note=f"seed {seed}")


def _listed(values) -> list | None:
    if values is None:
        return None
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ZooError(f"expected a list of ids, got {values!r}")
    return list(values.tolist() if isinstance(values, np.ndarray) else values)


def _seeds_of(name: str, store: Store) -> list[int]:
    models = {m.name: m for m in list_models(store=store)}
    if name not in models:
        open_run(name, seed=0, store=store)  # the error that lists the models
    return list(models[name].seeds)


def _interventions(drop_samples, drop_documents, replace_data, lr_scale, settings, reinit,
                   reinit_seed) -> Interventions:
    samples = tuple(sorted({whole_number(s, "each dropped sample id") for s in drop_samples}))
    documents = tuple(sorted({str(d) for d in drop_documents}))
    if replace_data is not None and (samples or documents):
        raise ZooError("replace_data trains on another corpus, where the parent's sample and "
                       "document ids mean nothing: drop samples, or replace the data, not both")
    if replace_data is not None and (not isinstance(replace_data, str) or not replace_data.strip()):
        raise ZooError(f"replace_data is a source (builtin:NAME, a file or folder, mix:[...]), "
                       f"got {replace_data!r}")
    if lr_scale is not None:
        if isinstance(lr_scale, bool) or not isinstance(lr_scale, (int, float)) or not lr_scale > 0:
            raise ZooError(f"lr_scale must be a number > 0, got {lr_scale!r}")
        lr_scale = float(lr_scale)
    pairs = []
    for key, value in sorted((settings or {}).items()):
        if key not in SETTABLE:
            raise ZooError(f"cannot set {key!r} in a branch; settable from the branch point: "
                           f"{', '.join(SETTABLE)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ZooError(f"{key} must be a number >= 0, got {value!r}")
        pairs.append((key, float(value)))
    patterns = (reinit,) if isinstance(reinit, str) else tuple(str(p) for p in reinit)
    return Interventions(samples, documents, replace_data, lr_scale, tuple(pairs), patterns,
                         whole_number(reinit_seed, "reinit_seed"))


def _branch_one(name: str, *, seed: int, from_step: int, label: str, until_step: int | None,
                store: Store, parent: str | None, interventions: Interventions, resume: bool,
                device: str, progress: bool, stop_after_step, hold_after_step,
                note: str) -> RunOutcome:
    source = open_run(name, seed=seed, store=store, branch=parent)
    from_step, until_step = _check_steps(source, from_step, until_step)
    window = interventions.drop_until
    if window is not None and not from_step < window <= until_step:
        raise ZooError(f"drop_until {window} is outside the branch's steps {from_step + 1}.."
                       f"{until_step}: the window of dropped samples ends inside them")
    target = store.run(source.run_id.with_branch(label))
    if target.run_id == source.run_id:
        raise ZooError(f"branch {label!r} cannot be its own parent; choose another label")
    started = time.perf_counter()
    owner = f"{socket.gethostname()}:{os.getpid()}"
    existing = bool(target.location.exists("run.json") and target.keyframe_steps())
    # a new branch's whole start (replay to N, interventions) is prepared before anything is
    # written, so bad input leaves nothing behind
    start = None if existing else _prepare(target, source, from_step, until_step, interventions,
                                           device=device, progress=progress)
    with target.lock(owner):
        writer = BackgroundWriter()
        try:
            if existing:
                cfg, corpus, plan, state = _reopen(target, source, from_step, until_step,
                                                   interventions, resume, device=device)
                if state is None:
                    last = target.status()["last_step"]
                    return RunOutcome(target.run_id, "skipped", last, last, None, 0.0)
            else:
                cfg, corpus, plan, state = _write_start(target, start, writer=writer)
            first = state.step
            last, loss = _loop(cfg, target, corpus, state, state.model, first_step=first,
                               device=device, progress=progress, stop_after_step=stop_after_step,
                               hold_after_step=hold_after_step,
                               label=f"branch {label} of {name} {note}", writer=writer, plan=plan)
        finally:
            writer.close()
    status = "resumed" if existing else "trained"
    return RunOutcome(target.run_id, status, first, last, loss, time.perf_counter() - started)


def _check_steps(source: RunStore, from_step, until_step) -> tuple[int, int]:
    from_step = whole_number(from_step, "from_step")
    status = source.status()
    last = int(status.get("last_step", 0))
    cfg = RunConfig.from_json(source.read_json("run.json")["config"])
    if from_step > last:
        raise ZooError(f"step {from_step} is beyond {source.run_id}: it was trained to step {last}; "
                       f"branch at a step 0..{last}")
    record = branch_record(source)
    if record is not None and from_step < record["from_step"]:
        raise ZooError(f"{source.run_id} starts at step {record['from_step']}; to branch at step "
                       f"{from_step}, branch its parent {record['parent']} instead")
    until_step = last if until_step is None else whole_number(until_step, "until_step")
    if until_step <= from_step:
        raise ZooError(f"until_step {until_step} is not after from_step {from_step}: a branch "
                       f"trains at least one step (the parent was trained to step {last})")
    if until_step > cfg.steps:
        raise ZooError(f"until_step {until_step} is beyond the end of {source.run_id}'s schedule "
                       f"(steps: {cfg.steps}); its learning-rate schedule stops there")
    if _world_size(source) > 1 and not cfg.micro_batch_size:
        raise ZooError(f"{source.run_id} was trained on several processes; a branch trains on one, "
                       f"which would change its bits (only runs with micro_batch_size can branch)")
    return from_step, until_step


def _world_size(run: RunStore) -> int:
    return int(run.read_json("environment.json").get("world_size", 1))


def _request(source: RunStore, from_step: int, until_step: int, wanted: Interventions) -> dict:
    """What the branch was asked for, as recorded and compared on --resume."""
    return {"parent": source.run_id.key, "from_step": from_step, "until_step": until_step,
            "interventions": _describe(wanted)}


def _describe(wanted: Interventions) -> list[dict]:
    out = []
    if wanted.drop_samples:
        digest = hashlib.sha256(np.asarray(wanted.drop_samples, dtype="<i8").tobytes()).hexdigest()
        out.append({"kind": "drop_samples", "count": len(wanted.drop_samples), "sha256": digest})
    if wanted.drop_documents:
        out.append({"kind": "drop_documents", "documents": list(wanted.drop_documents)})
    if wanted.drop_until is not None:
        for item in out:
            item["until_step"] = wanted.drop_until
    if wanted.replace_data is not None:
        out.append({"kind": "replace_data", "source": wanted.replace_data})
    if wanted.lr_scale is not None:
        out.append({"kind": "lr_scale", "value": wanted.lr_scale})
    out += [{"kind": "set", "field": key, "value": value} for key, value in wanted.settings]
    if wanted.reinit:
        out.append({"kind": "reinit", "params": list(wanted.reinit), "seed": wanted.reinit_seed})
    return out


def _branch_config(parent_cfg: RunConfig, wanted: Interventions) -> RunConfig:
    optimizer = parent_cfg.optimizer
    if wanted.lr_scale is not None:
        optimizer = dataclasses.replace(optimizer, lr=optimizer.lr * wanted.lr_scale)
    for key, value in wanted.settings:
        optimizer = dataclasses.replace(optimizer, **{key.split(".", 1)[1]: value})
    return dataclasses.replace(parent_cfg, optimizer=optimizer)


def _branch_corpus(store: Store, source: RunStore, wanted: Interventions, *,
                   progress: bool) -> Corpus:
    parent_corpus = open_corpus(store, source.read_json("run.json")["corpus_fingerprint"])
    if wanted.replace_data is None:
        return parent_corpus
    from zoo.config.run_config import DataConfig

    data = DataConfig(source=wanted.replace_data, tokenizer=str(parent_corpus.tokenizer_dir),
                      vocab_size=parent_corpus.vocab_size, seq_len=parent_corpus.seq_len)
    corpus = ensure_corpus(store, data, progress=progress)
    if corpus.vocab_size != parent_corpus.vocab_size or corpus.seq_len != parent_corpus.seq_len:
        raise ZooError(f"{wanted.replace_data} prepared with vocabulary {corpus.vocab_size} and "
                       f"seq_len {corpus.seq_len}; the parent has {parent_corpus.vocab_size} and "
                       f"{parent_corpus.seq_len}")
    return corpus


def _dropped(corpus: Corpus, wanted: Interventions) -> np.ndarray | None:
    """Every sample the branch never trains on (None: nothing dropped)."""
    if not (wanted.drop_samples or wanted.drop_documents):
        return None
    samples = np.asarray(wanted.drop_samples, dtype=np.int64)
    outside = samples[(samples < 0) | (samples >= corpus.n_samples)]
    if outside.size:
        raise ZooError(f"{outside.size} dropped sample id(s) are not in the corpus (e.g. "
                       f"{int(outside[0])}); its samples are 0..{corpus.n_samples - 1}")
    documents = corpus.samples_of_documents(wanted.drop_documents) if wanted.drop_documents else []
    return np.union1d(samples, np.asarray(documents, dtype=np.int64))


def _plan(source: RunStore, cfg: RunConfig, corpus: Corpus, from_step: int, until_step: int,
          dropped: np.ndarray | None, drop_until: int | None) -> Plan:
    """The parent's checkpoint and keyframe steps inside the branch, plus both its ends, and the
    branch's data order (data_index/branch_order.py)."""
    inside = lambda steps: frozenset(s for s in steps if from_step < s <= until_step) | {until_step}
    order = _order(source, cfg, corpus, from_step, dropped, drop_until)
    batch_of = None
    if not order.is_plain(cfg.batch_size):
        train = corpus.train_ids(cfg.seed.data_seed) if corpus.train_fraction is not None else None
        table = order.batches(from_step + 1, until_step, data_seed=cfg.seed.data_seed,
                              batch_size=cfg.batch_size, n_samples=corpus.n_samples,
                              train_ids=train)
        batch_of = lambda step: table[step - from_step - 1]
    return Plan(until_step, inside(checkpoint_steps(cfg.checkpoints, cfg.steps)),
                inside(keyframe_steps(cfg.checkpoints, cfg.steps)), batch_of,
                {"begins_after": from_step, "order": order})


def _order(source: RunStore, cfg: RunConfig, corpus: Corpus, from_step: int,
           dropped: np.ndarray | None, drop_until: int | None) -> BranchOrder:
    """Where the branch reads its parent's order on from, and what it leaves out: a branch of a
    branch goes on from its parent's position with its parent's still-active dropped set."""
    size = cfg.batch_size
    train = corpus.train_ids(cfg.seed.data_seed) if corpus.train_fraction is not None else None
    parent = None
    if branch_record(source) is not None and (
            source.read_json("run.json")["corpus_fingerprint"] == corpus.fingerprint):
        parent = StepIndex.open(source.index_location).branch_order()
    start, skip, until = from_step * size, np.zeros(0, dtype=np.int64), None
    if parent is not None:
        start = parent.position_after(from_step, data_seed=cfg.seed.data_seed, batch_size=size,
                                      n_samples=corpus.n_samples, train_ids=train)
        if len(parent.skip) and (parent.skip_until is None or parent.skip_until > from_step):
            skip, until = parent.skip, parent.skip_until
    if dropped is not None:
        if len(skip) and until != drop_until:
            raise ZooError(f"{source.run_id} drops {len(skip)} samples until step "
                           f"{until if until is not None else 'its end'}; a branch of it that "
                           f"drops more must drop them for the same window (--drop-until "
                           f"{until if until is not None else '(none)'})")
        skip, until = np.union1d(skip, dropped), drop_until
    return BranchOrder(from_step, int(start), skip, until)


@dataclasses.dataclass
class _Start:
    """A new branch's state at its branch point and its records, before anything is written."""

    cfg: RunConfig
    corpus: Corpus
    plan: Plan
    state: TrainingState
    rng: dict
    record: dict
    device: str


def _prepare(target: RunStore, source: RunStore, from_step: int, until_step: int,
             wanted: Interventions, *, device: str, progress: bool) -> _Start:
    store = target.store
    record = source.read_json("run.json")
    parent_cfg = RunConfig.from_json(record["config"])
    cfg = _branch_config(parent_cfg, wanted)
    corpus = _branch_corpus(store, source, wanted, progress=progress)
    dropped = _dropped(corpus, wanted)
    plan = _plan(source, cfg, corpus, from_step, until_step, dropped, wanted.drop_until)
    keyframe = max(k for k in source.keyframe_steps() if k <= from_step)
    replayed = restore(source, keyframe, store=store, device=device)
    step_to(replayed, from_step, progress=progress)
    state = replayed.training
    rng = rng_state.capture()  # the parent's streams at N, before anything below draws
    state.cfg = cfg
    reinitialised = _apply(state, parent_cfg, wanted, vocab_size=corpus.vocab_size,
                           eos_token_id=corpus.eos_id)
    request = _request(source, from_step, until_step, wanted)
    if reinitialised:
        request["reinitialised"] = reinitialised
    if dropped is not None:
        request["dropped_samples"] = int(len(dropped))
    branch_run_record = {
        **record,
        "run": target.run_id.key,
        "config": cfg.to_json(),
        "config_hash": cfg.config_hash(),
        "corpus_fingerprint": corpus.fingerprint,
        "n_samples": corpus.n_samples,
        "checkpoint_steps": sorted(plan.checkpoint_steps | {from_step}),
        "keyframe_steps": sorted(plan.keyframe_steps | {from_step}),
        "branch": {"label": target.run_id.branch, **request},
    }
    return _Start(cfg, corpus, plan, state, rng, branch_run_record, device)


def _write_start(target: RunStore, start: _Start, *, writer: BackgroundWriter):
    """The branch's records and its step N (keyframe and checkpoint)."""
    target.delete_after(-1)  # a branch that died before its first keyframe leaves nothing
    fingerprint = environment.fingerprint(start.device)
    target.write_json("environment.json", fingerprint)
    target.write_json("run.json", start.record)
    _write_step(start.cfg, target, start.state, fingerprint=fingerprint, checkpoint=True,
                keyframe=True, rng=start.rng, writer=writer, end_step=start.plan.end_step)
    return start.cfg, start.corpus, start.plan, start.state


def _reopen(target: RunStore, source: RunStore, from_step: int, until_step: int,
            wanted: Interventions, resume: bool, *, device: str):
    """An existing branch: refused without resume; with it, checked and restored (None: done)."""
    recorded = target.read_json("run.json")["branch"]
    if not resume:
        raise ZooError(f"branch {target.run_id.branch!r} of {source.run_id} exists already (from "
                       f"step {recorded['from_step']}); resume it with --resume, or choose "
                       f"another label")
    asked = _request(source, from_step, until_step, wanted)
    changed = [k for k in asked if recorded.get(k) != asked[k]]
    if changed:
        raise ZooError(f"branch {target.run_id.branch!r} was made with other {', '.join(changed)} "
                       f"(recorded: {', '.join(f'{k}={recorded.get(k)!r}' for k in changed)}); "
                       f"resume it with the same arguments, or choose another label")
    record = target.read_json("run.json")
    cfg = RunConfig.from_json(record["config"])
    corpus = open_corpus(target.store, record["corpus_fingerprint"])
    plan = _plan(source, cfg, corpus, from_step, until_step, _dropped(corpus, wanted),
                 wanted.drop_until)
    if target.status().get("finished"):
        return cfg, corpus, plan, None
    keyframe = target.keyframe_steps()[-1]
    state = restore_state(target, cfg, keyframe, vocab_size=corpus.vocab_size,
                          eos_token_id=corpus.eos_id, device=device)
    target.delete_after(keyframe)
    return cfg, corpus, plan, state


def _apply(state: TrainingState, parent_cfg: RunConfig, wanted: Interventions, *,
           vocab_size: int, eos_token_id: int) -> list[str]:
    """Change the restored state as the interventions say; returns the re-initialised names."""
    if wanted.lr_scale is not None or wanted.settings:
        _apply_hyperparameters(state, parent_cfg)
    if not wanted.reinit:
        return []
    params = dict(state.model.named_parameters())
    chosen = sorted(n for n in params if any(fnmatch.fnmatchcase(n, p) for p in wanted.reinit))
    if not chosen:
        raise ZooError(f"reinit {', '.join(wanted.reinit)} matches no parameter; names look like "
                       f"{', '.join(list(params)[:4])} (glob patterns: * and ?)")
    seeds = dataclasses.replace(state.cfg.seed, init_seed=derive_seed("reinit", wanted.reinit_seed)
                                % (1 << 31))
    fresh = dict(build_model(dataclasses.replace(state.cfg, seed=seeds), vocab_size=vocab_size,
                             eos_token_id=eos_token_id).named_parameters())
    with torch.no_grad():
        for name in chosen:
            params[name].copy_(fresh[name].to(params[name].device))
            moments = state.optimizer.state.get(params[name], {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in moments:
                    moments[key].zero_()
    return chosen


def _apply_hyperparameters(state: TrainingState, parent_cfg: RunConfig) -> None:
    """The branch config's lr / weight decay into the restored optimizer and schedule (a
    restored optimizer keeps the values it was saved with; clip is read from the config)."""
    new, old = state.cfg.optimizer, parent_cfg.optimizer
    scale = new.lr / old.lr if old.lr else 1.0
    for k, group in enumerate(state.optimizer.param_groups):
        group["lr"] *= scale
        if "initial_lr" in group:
            group["initial_lr"] *= scale
        if k == 0:  # the decayed group (zoo.engine.train_step.make_optimizer)
            group["weight_decay"] = new.weight_decay
    state.scheduler.base_lrs = [lr * scale for lr in state.scheduler.base_lrs]
