"""Counterfactual branches: a run's exact state at any step, trained on with one thing changed.

    zoo.branch("induction-attn2l", seed=1, from_step=300, until_step=800, label="norepeats",
               drop_documents=ids)              # seed="all": every seed of the model alike

A branch starts from its parent's exact state at step N: the parent's keyframe before N, replayed
to N with the one training step (so any step works, stored or not). It then trains to its
until-step M (default: the parent's last step) with the same step function, schedule and
checkpoint steps, and is stored beside its parent as a run of its own (`seed-S@LABEL`) whose
run.json names its parent, its branch point and its interventions. Its blobs are the store's
content-addressed blobs, so whatever equals the parent's is stored once.

The interventions are training/interventions.py's, each recorded in the branch's run.json.
A branch with none reproduces its parent bit for bit (tests/test_branches.py): that is what gives
every other branch's difference its meaning. A branch's step N is its state after the
intervention; steps before N are its parent's (zoo.store.lineage).
"""
from __future__ import annotations

import dataclasses
import os
import socket
import time

import numpy as np

from zoo_common.arguments import whole_number
from zoo_common.errors import ArgumentError, ZooError
from data_index import Corpus
from data_index.branch_order import BranchOrder
from data_index.step_index import StepIndex
from training.background_writer import BackgroundWriter
from training.loop import RunOutcome, train_steps
from training.run_steps import write_step
from training.interventions import (
    Interventions,
    apply_interventions,
    branch_config,
    describe,
    interventions_from,
)
from training.session import Controls, Plan, Session
from zoo import environment
from zoo.config.checkpoint_policy import checkpoint_steps, keyframe_steps
from zoo.config.names import check_branch
from zoo.config.run_config import RunConfig
from zoo.engine import rng_state
from zoo.engine.step_replay import restore, step_to
from zoo.engine.training_state import TrainingState, restore_state
from zoo.store.catalog import list_models, open_run, open_store
from zoo.store.corpora import ensure_corpus, open_corpus
from zoo.store.lineage import branch_record
from zoo.store.run_store import RunStore
from zoo.store.store import Store

def branch(name: str, *, seed: int | str, from_step: int, label: str,
           until_step: int | None = None, store: str | os.PathLike | Store | None = None,
           parent: str | None = None, resume: bool = False, device: str = "cpu",
           progress: bool = True, controls: Controls | None = None, **interventions):
    """Branch (name, seed) — or its branch `parent` — at `from_step` as branch `label`; returns the
    RunOutcome (a list of them for seed="all": every seed of the model, alike).

    Interventions, as keywords (none: a null branch, the parent bit for bit):
      drop_samples=[ids], drop_documents=[ids], drop_until=STEP (the window of dropping ends),
      mask_samples=[ids] (kept in their batches with no loss: the same batches without them),
      replace_data=SOURCE, lr_scale=X, settings={"optimizer.weight_decay": 0.0, ...},
      reinit=["glob", ...], reinit_seed=S.
    An existing label is refused unless `resume=True`, which goes on from the branch's last
    keyframe (a killed branch resumes like any run) when the interventions are the same. An
    intervention given empty (drop_samples=[]) is refused: leave it out for a null branch.
    `controls` (training.session.Controls) overrides device and progress and can stop early.
    Every read takes `branch=label` afterwards (zoo.load, zoo.batch, zoo.replay, zoo.metrics...).
    """
    store = open_store(store)
    check_branch(label)
    if not label:
        raise ArgumentError("a branch needs a label (--label): lower-case letters, digits, '_', "
                            "'.', '-'")
    wanted = interventions_from(interventions, label)
    controls = controls or Controls(device=device, progress=progress)
    options = dict(from_step=from_step, label=label, until_step=until_step, store=store,
                   parent=parent, interventions=wanted, resume=resume, controls=controls)
    if seed == "all":
        seeds = _seeds_of(name, store)
        return [_branch_one(name, seed=s, **options, note=f"seed {s} ({k}/{len(seeds)})")
                for k, s in enumerate(seeds, start=1)]
    return _branch_one(name, seed=seed, **options, note=f"seed {seed}")


def _seeds_of(name: str, store: Store) -> list[int]:
    models = {m.name: m for m in list_models(store=store)}
    if name not in models:
        open_run(name, seed=0, store=store)  # the error that lists the models
    return list(models[name].seeds)


def _branch_one(name: str, *, seed: int, from_step: int, label: str, until_step: int | None,
                store: Store, parent: str | None, interventions: Interventions, resume: bool,
                controls: Controls, note: str) -> RunOutcome:
    source = open_run(name, seed=seed, store=store, branch=parent)
    from_step, until_step = _check_steps(source, from_step, until_step)
    window = interventions.drop_until
    if window is not None and not from_step < window <= until_step:
        raise ArgumentError(f"drop_until {window} is outside the branch's steps {from_step + 1}.."
                            f"{until_step}: the window of dropped samples ends inside them")
    target = store.run(source.run_id.with_branch(label))
    if target.run_id == source.run_id:
        raise ArgumentError(f"branch {label!r} cannot be its own parent; choose another label")
    started = time.perf_counter()
    owner = f"{socket.gethostname()}:{os.getpid()}"
    existing = bool(target.location.exists("run.json") and target.keyframe_steps())
    # a new branch's whole start (replay to N, interventions) is prepared before anything is
    # written, so bad input leaves nothing behind
    start = None if existing else _prepare(target, source, from_step, until_step, interventions,
                                           controls=controls)
    with target.lock(owner):
        writer = BackgroundWriter()
        try:
            if existing:
                cfg, corpus, plan, state = _reopen(target, source, from_step, until_step,
                                                   interventions, resume, device=controls.device)
                if state is None:
                    last = target.status()["last_step"]
                    return RunOutcome(target.run_id, "skipped", last, last, None, 0.0)
            else:
                cfg, corpus, plan, state = start.cfg, start.corpus, start.plan, start.state
            session = Session(cfg, target, corpus, plan, controls,
                              f"branch {label} of {name} {note}", writer)
            if not existing:
                _write_start(session, start)
            first = state.step
            last, loss = train_steps(session, state, state.model)
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
            "interventions": describe(wanted)}


def _branch_corpus(store: Store, source: RunStore, wanted: Interventions, *,
                   progress: bool) -> Corpus:
    parent_corpus = open_corpus(store, source.read_json("run.json")["corpus_fingerprint"])
    if wanted.replace_data is None:
        return parent_corpus
    from zoo.config.run_config import DataConfig

    if getattr(parent_corpus, "drawn", False):
        return _other_features(store, parent_corpus, wanted.replace_data, progress=progress)

    data = DataConfig(source=wanted.replace_data, tokenizer=str(parent_corpus.tokenizer_dir),
                      vocab_size=parent_corpus.vocab_size, seq_len=parent_corpus.seq_len)
    corpus = ensure_corpus(store, data, progress=progress)
    if corpus.vocab_size != parent_corpus.vocab_size or corpus.seq_len != parent_corpus.seq_len:
        raise ZooError(f"{wanted.replace_data} prepared with vocabulary {corpus.vocab_size} and "
                       f"seq_len {corpus.seq_len}; the parent has {parent_corpus.vocab_size} and "
                       f"{parent_corpus.seq_len}")
    return corpus


def _other_features(store: Store, parent, source: str, *, progress: bool):
    """Other drawn features for a branch of a superposition run: the same features (n) and
    importances (the model's loss weighs them), another sparsity."""
    from data_index.features import FeatureRecipe, is_feature_source
    from zoo.config.run_config import DataConfig

    if not is_feature_source(source):
        raise ArgumentError(f"{parent.recipe.source} is feature vectors: a branch of it trains on "
                            f"other features (builtin:sparse_features?...), not {source!r}")
    recipe = FeatureRecipe.parse(source)
    if (recipe.n, recipe.importance) != (parent.recipe.n, parent.recipe.importance):
        raise ArgumentError(f"replace_data {recipe.source}: a branch keeps the model, so its n "
                            f"({parent.recipe.n}) and importance ({parent.recipe.importance}) "
                            f"stay; change the sparsity")
    return ensure_corpus(store, DataConfig(source=recipe.source), progress=progress)


def _dropped(corpus: Corpus, wanted: Interventions) -> np.ndarray | None:
    """Every sample the branch never trains on (None: nothing dropped); masked samples are
    checked here too (they stay in the order, so nothing is dropped for them)."""
    if wanted.mask_samples:
        if getattr(corpus, "drawn", False):
            raise ArgumentError("this run's samples are drawn afresh for every step: there are no "
                                "sample ids to mask")
        _in_corpus(wanted.mask_samples, corpus, "masked")
    if not (wanted.drop_samples or wanted.drop_documents):
        return None
    if getattr(corpus, "drawn", False):
        raise ArgumentError("this run's samples are drawn afresh for every step and none is seen "
                            "twice, so there is nothing to drop; branch with other data "
                            "(replace_data='builtin:sparse_features?...') or another setting")
    samples = _in_corpus(wanted.drop_samples, corpus, "dropped")
    documents = corpus.samples_of_documents(wanted.drop_documents) if wanted.drop_documents else []
    return np.union1d(samples, np.asarray(documents, dtype=np.int64))


def _in_corpus(ids, corpus: Corpus, what: str) -> np.ndarray:
    """`ids` as an array, each a sample of the corpus, or one error naming the first that is not."""
    samples = np.asarray(ids, dtype=np.int64)
    outside = samples[(samples < 0) | (samples >= corpus.n_samples)]
    if outside.size:
        raise ZooError(f"{outside.size} {what} sample id(s) are not in the corpus (e.g. "
                       f"{int(outside[0])}); its samples are 0..{corpus.n_samples - 1}")
    return samples


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


def _prepare(target: RunStore, source: RunStore, from_step: int, until_step: int,
             wanted: Interventions, *, controls: Controls) -> _Start:
    store = target.store
    record = source.read_json("run.json")
    parent_cfg = RunConfig.from_json(record["config"])
    cfg = branch_config(parent_cfg, wanted)
    corpus = _branch_corpus(store, source, wanted, progress=controls.progress)
    dropped = _dropped(corpus, wanted)
    plan = _plan(source, cfg, corpus, from_step, until_step, dropped, wanted.drop_until)
    keyframe = max(k for k in source.keyframe_steps() if k <= from_step)
    replayed = restore(source, keyframe, store=store, device=controls.device)
    step_to(replayed, from_step, progress=controls.progress)
    state = replayed.training
    rng = rng_state.capture()  # the parent's streams at N, before anything below draws
    state.cfg = cfg
    reinitialised = apply_interventions(state, parent_cfg, wanted, vocab_size=corpus.vocab_size,
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
    return _Start(cfg, corpus, plan, state, rng, branch_run_record)


def _write_start(session: Session, start: _Start) -> None:
    """The branch's records and its step N (keyframe and checkpoint)."""
    target = session.run
    target.delete_after(-1)  # a branch that died before its first keyframe leaves nothing
    fingerprint = environment.fingerprint(session.device)
    target.write_json("environment.json", fingerprint)
    target.write_json("run.json", start.record)
    write_step(session, start.state, fingerprint=fingerprint, checkpoint=True, keyframe=True,
               rng=start.rng)


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


