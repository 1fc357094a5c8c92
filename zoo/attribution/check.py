"""The truth an attribution is checked against: drop the samples it names and retrain the window.

Branches (training.branching) retrain steps (A, B] exactly from the run's state at A with chosen
samples masked: every step trains on its own batch without them (they stay in their slots with no
loss), which is the counterfactual the scores linearise; the target loss at B on the branch minus
the parent's is what removing them did. (Dropping them from the order instead, as `zoo branch
--drop-samples` does, moves every later sample into an earlier batch: in a 100-step window of
the induction phase change, 100 random drops moved the target by -0.25 to +0.44 nats, more than
any attributed set, so that check measured the reshuffle; benchmarks/RESULTS.md.)

- removal: the k highest-scored samples, k random ones, the k lowest. A working attribution
  orders them: top raises the target loss most, bottom least (or lowers it).
- LDS (linear datamodeling score, Park et al. 2023): M random subsets of the window's samples
  (each a `fraction` of them) masked, one branch each; per method the Spearman correlation between
  the summed scores of a subset's samples (the attribution's additive prediction of the rise) and
  the measured rise.

Branch labels name what they mask (a digest of the ids), so a rerun reuses finished branches.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np
import torch

from zoo_common.arguments import whole_number
from zoo_common.errors import ArgumentError, BranchNotFoundError
from zoo.attribution.attribution import Attribution, sample_scores
from zoo.attribution.trajectory import METHODS


@dataclass(frozen=True)
class Removal:
    method: str
    k: int
    rise: dict  # arm ("top", "random", "bottom") -> target loss at B, branch minus parent
    parent_loss: float
    ordered: bool  # top > random > bottom
    seconds: float


@dataclass(frozen=True)
class DatamodelingScore:
    m: int
    fraction: float
    spearman: dict  # method -> Spearman's rho over the M subsets
    predicted: dict  # method -> [M] summed scores of each subset
    actual: list  # [M] measured rises
    seconds: float


def removal_check(result: Attribution, *, k: int, method: str = "adam", store=None,
                  rng_seed: int = 0, progress: bool = False, scores: dict | None = None) -> Removal:
    """Drop the top, k random and the bottom k samples of `result`'s window; measure each.
    `scores` (sample id -> score, e.g. a library's) replaces the method's own, named `method`."""
    started = time.perf_counter()
    scores = sample_scores(result, method) if scores is None else _checked(scores, result)
    ranked = sorted(scores, key=lambda i: (-scores[i], i))
    k = whole_number(k, "k", minimum=1)
    if 2 * k > len(ranked):
        raise ArgumentError(f"k = {k} is more than half of the {len(ranked)} samples the window "
                            f"trained on: top and bottom would overlap (use k <= {len(ranked) // 2})")
    rng = np.random.default_rng(rng_seed)
    arms = {"top": ranked[:k],  # the random arm: the same samples whichever method ranks them
            "random": sorted(rng.choice(sorted(ranked), size=k, replace=False).tolist()),
            "bottom": ranked[-k:]}
    parent = target_loss_at(result, None, store=store)
    rise = {arm: target_loss_at(result, _dropped_branch(result, ids, store, progress), store=store)
            - parent for arm, ids in arms.items()}
    return Removal(method, k, rise, parent, rise["top"] > rise["random"] > rise["bottom"],
                   time.perf_counter() - started)


def datamodeling_score(result: Attribution, *, m: int = 20, fraction: float = 0.5, store=None,
                       rng_seed: int = 0, progress: bool = False,
                       others: dict | None = None) -> DatamodelingScore:
    """LDS of every method on M random subsets dropped by branches (module docstring); `others`
    ({name: {sample id: score}}, e.g. a library's) are scored on the same subsets."""
    from scipy.stats import spearmanr

    started = time.perf_counter()
    m = whole_number(m, "m", minimum=3)
    if not 0 < fraction < 1:
        raise ArgumentError(f"fraction is the share of the window's samples each subset drops, "
                            f"0 < fraction < 1; got {fraction!r}")
    by_method = {method: sample_scores(result, method) for method in METHODS}
    by_method.update({name: _checked(scores, result) for name, scores in (others or {}).items()})
    samples = sorted(by_method[METHODS[0]])
    size = max(1, round(fraction * len(samples)))
    rng = np.random.default_rng(rng_seed)
    parent = target_loss_at(result, None, store=store)
    predicted: dict[str, list] = {}
    actual = []
    for j in range(m):
        dropped = sorted(rng.choice(samples, size=size, replace=False).tolist())
        for method in by_method:
            predicted.setdefault(method, []).append(float(sum(by_method[method][i] for i in dropped)))
        actual.append(target_loss_at(result, _dropped_branch(result, dropped, store, progress),
                                     store=store) - parent)
        if progress:
            print(f"LDS subset {j + 1}/{m}: rise {actual[-1]:+.4f}", flush=True)
    rho = {method: float(spearmanr(predicted[method], actual).statistic) for method in by_method}
    return DatamodelingScore(m, fraction, rho, predicted, actual, time.perf_counter() - started)


def _checked(scores: dict, result: Attribution) -> dict:
    """Given scores must cover exactly the samples the window trained on."""
    window = set(sample_scores(result, METHODS[0]))
    if set(scores) != window:
        missing, extra = len(window - set(scores)), len(set(scores) - window)
        raise ArgumentError(f"the given scores must score the {len(window)} samples of the window: "
                            f"{missing} missing, {extra} not in it")
    return {int(i): float(v) for i, v in scores.items()}


def target_loss_at(result: Attribution, branch: str | None, *, store=None) -> float:
    """The target loss of (result's run, or its branch `branch`) at the window's last step."""
    import zoo
    from zoo.attribution.targets import run_target
    from zoo.store.catalog import open_run, open_store
    from zoo.store.corpora import open_corpus

    store = open_store(store)
    run = open_run(result.name, seed=result.seed, store=store, branch=result.branch or None)
    record = run.read_json("run.json")
    corpus = open_corpus(store, record["corpus_fingerprint"])
    target = run_target(result.target, record, corpus, heldout=result.heldout)
    label = branch or (result.branch or None)
    model, _ = zoo.load(result.name, seed=result.seed, step=result.until_step, store=store,
                        branch=label)
    with torch.no_grad():
        return float(target.loss(model))


def _dropped_branch(result: Attribution, ids: list[int], store, progress: bool) -> str:
    """The branch of result's run that retrains its window without `ids` (made once, then reused):
    the same batches with those samples masked (no loss), which is the counterfactual the scores
    predict. Dropping them instead would shift every later sample into an earlier batch, and
    that reshuffle, not the samples, would dominate the change."""
    from zoo.store.catalog import open_run, open_store
    from zoo.write_side import reach

    store = open_store(store)
    digest = hashlib.sha256(",".join(map(str, sorted(ids))).encode()).hexdigest()[:10]
    label = f"mask-{result.from_step}-{result.until_step}-{digest}"
    try:
        existing = open_run(result.name, seed=result.seed, store=store, branch=label)
    except BranchNotFoundError:  # not made yet
        existing = None
    if existing is not None and int(existing.status().get("last_step", -1)) >= result.until_step:
        return label
    reach("branch")(result.name, seed=result.seed, from_step=result.from_step,
                    until_step=result.until_step, label=label, store=store,
                    parent=result.branch or None, mask_samples=list(ids),
                    drop_until=result.until_step,
                    resume=existing is not None, progress=progress)
    return label
