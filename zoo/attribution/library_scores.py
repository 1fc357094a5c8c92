"""A library's attribution on the same window and target, for the check to score beside ours.

TRAK (Park et al. 2023) as dattri implements it (`dattri.algorithm.trak.TRAKAttributor`): random
projections of per-sample gradients at a few checkpoints of the window (zoo.load's weights, given
to dattri as state dicts), the target's examples as its test set. It sees checkpoints, not the
trajectory: what it scores is each sample of the window, whatever step trained on it. Its score
for a training sample is the mean over the target's examples; positive means the sample pushed
the target loss down, as ours. Needs the `attribution` extra (dattri).
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from zoo_common.errors import ZooError

EXTRA = "pip install 'model-zoo[attribution]'"


def trak_scores(result, *, store=None, checkpoints: int = 2, proj_dim: int = 512,
                batch_size: int = 128) -> tuple[dict[int, float], float]:
    """({sample id: TRAK score}, seconds) for the samples of `result`'s window, on its target,
    with `checkpoints` evenly spaced steps of the window (its first and last step included)."""
    try:
        from dattri.algorithm.trak import TRAKAttributor
        from dattri.task import AttributionTask
    except ImportError:
        raise ZooError(f"TRAK comes from dattri, the `attribution` extra: {EXTRA}") from None
    import zoo
    from zoo.attribution.targets import run_target
    from zoo.store.catalog import open_run, open_store
    from zoo.store.corpora import open_corpus

    started = time.perf_counter()
    store = open_store(store)
    run = open_run(result.name, seed=result.seed, store=store, branch=result.branch or None)
    record = run.read_json("run.json")
    corpus = open_corpus(store, record["corpus_fingerprint"])
    target = run_target(result.target, record, corpus, heldout=result.heldout)
    ids = sorted(result.per_sample().column("sample_id").to_pylist())
    span = result.until_step - result.from_step
    steps = sorted({result.from_step + round(i * span / max(checkpoints - 1, 1))
                    for i in range(checkpoints)})
    states, model = [], None
    for step in steps:
        loaded, _ = zoo.load(result.name, seed=result.seed, step=step, store=store,
                             branch=result.branch or None)
        states.append({k: v.detach().clone() for k, v in loaded.state_dict().items()})
        model = loaded
    model.eval()

    def loss_of(params, data):
        tokens, mask = data
        logits = torch.func.functional_call(model, params, (tokens.unsqueeze(0),)).logits[0, :-1]
        losses = F.cross_entropy(logits.float(), tokens[1:], reduction="none")
        weights = mask[1:].float()
        return (losses * weights).sum() / weights.sum()

    def probability(params, data):
        return torch.exp(-loss_of(params, data))

    train = torch.from_numpy(corpus.samples(ids)).long()
    train_loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(train, torch.ones_like(train, dtype=torch.bool)),
        batch_size=batch_size, shuffle=False)
    test_loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(target.tokens, target.mask), batch_size=batch_size,
        shuffle=False)
    task = AttributionTask(loss_func=loss_of, model=model, checkpoints=states)
    attributor = TRAKAttributor(task=task, correct_probability_func=probability, device="cpu",
                                projector_kwargs={"proj_dim": proj_dim, "device": "cpu"})
    attributor.cache(train_loader)
    with torch.no_grad():
        scores = attributor.attribute(test_loader)  # [n_train, n_test]
    per_sample = scores.double().mean(dim=1)
    return dict(zip(ids, per_sample.tolist())), time.perf_counter() - started
