"""Score every training sample of a window of steps on a target, along the run's exact trajectory.

Replay restores the keyframe before the window and runs the recorded steps with the same
`training_step` training ran; at each step t of (A, B] an observer sees the weights the update
started from and the step's batch, and scores each sample i of it:

    tracin  lr_t c_t / B  g_T . g_i                       (Pruthi et al. 2020, every step, as trained)
    adam    lr_t c_t / B  g_T . (g_i / (sqrt(v_t) + eps)) m_t

g_i: sample i's gradient (torch.func, vmap over the batch) of its loss as the step defines it;
g_T: the target loss's gradient at the same weights; B: the batch size; c_t: the step's clipping
factor min(1, clip / |g|); v_t: AdamW's bias-corrected second moment as this step leaves it (the
preconditioner the update divides by); m_t: the share of the sample's gradient that AdamW's
momentum applies in steps t..B, sum_k (1 - beta1) beta1^k / (1 - beta1^(s+k)) with s the
optimizer's step count. A score is the first-order change of the target loss that the sample's
part of the updates caused, with the sign flipped: positive means the sample lowered the target
loss, so dropping it should raise it. A sample trained on twice in the window has two rows.
"""
from __future__ import annotations

import time

import pyarrow as pa
import torch

from zoo.environment import held_thread_count
from zoo_common.errors import ArgumentError, StepNotFoundError
from zoo_common.progress import progress as progress_bar

METHODS = ("tracin", "adam")


def attribute_window(run, *, store, target, from_step: int, until_step: int,
                     progress: bool = True) -> pa.Table:
    """One row per (step, slot, method): step, slot, sample_id, document_id, method, score."""
    from zoo.engine.step_replay import restore, step_to
    from zoo.engine.training_state import training_batch

    keyframes = [k for k in run.keyframe_steps() if k <= from_step]
    if not keyframes:
        raise StepNotFoundError(f"{run.run_id.key}: no keyframe at or before step {from_step}")
    with held_thread_count():
        state = restore(run, max(keyframes), store=store)
        step_to(state, from_step)
        rows = {"step": [], "slot": [], "sample_id": [], "document_id": [], "method": [], "score": []}
        started = time.perf_counter()
        steps = range(from_step + 1, until_step + 1)
        for step in progress_bar(steps, desc=f"attribute {run.run_id.key} {from_step}..{until_step}",
                                 unit="step", enabled=progress):
            ids = [int(i) for i in state.index.batch_ids(step)]
            batch, mask = training_batch(state.corpus, ids, state.device,
                                         data_seed=state.cfg.seed.data_seed,
                                         masked=state.cfg.masked_at(step))
            scored = {}

            def observe(model, batch, outputs, scored=scored, step=step):
                scored.update(_score_step(model, state.optimizer, batch, mask, target, state.cfg,
                                          until_step - step))

            state.training.update(batch, loss_mask=mask, observe=observe)
            for method in METHODS:
                for slot, (sample, score) in enumerate(zip(ids, scored[method].tolist())):
                    rows["step"].append(step)
                    rows["slot"].append(slot)
                    rows["sample_id"].append(sample)
                    rows["document_id"].append(state.corpus.provenance(sample)[0])
                    rows["method"].append(method)
                    rows["score"].append(score)
        seconds = time.perf_counter() - started
    table = pa.table({"step": pa.array(rows["step"], pa.int64()), "slot": pa.array(rows["slot"], pa.int32()),
                      "sample_id": pa.array(rows["sample_id"], pa.int64()),
                      "document_id": pa.array(rows["document_id"], pa.string()),
                      "method": pa.array(rows["method"], pa.string()),
                      "score": pa.array(rows["score"], pa.float64())})
    return table.replace_schema_metadata({"seconds": f"{seconds:.3f}"})


def check_window(run, from_step: int, until_step: int) -> tuple[int, int]:
    """(A, B) checked against the run: 0 <= A < B <= its last trained step."""
    from zoo_common.arguments import whole_number

    a = whole_number(from_step, "from_step")
    b = whole_number(until_step, "until_step")
    last = int(run.status().get("last_step", 0))
    if not a < b:
        raise ArgumentError(f"the window (from_step, until_step] = ({a}, {b}] is empty: until_step "
                            f"must be after from_step")
    if b > last:
        raise ArgumentError(f"{run.run_id.key} was trained to step {last}; the window ({a}, {b}] "
                            f"goes past it (use until_step <= {last})")
    return a, b


def _score_step(model, optimizer, batch, mask, target, cfg, remaining: int) -> dict[str, torch.Tensor]:
    """The scores of one step's samples, from inside its training step (after backward, before
    clipping and the update: p.grad is the batch gradient the update will use)."""
    from torch.func import functional_call, grad, vmap

    from zoo.engine.instrument import masked_per_example_loss, per_example_loss

    named = [(n, p) for n, p in model.named_parameters() if p.grad is not None]
    params = {n: p.detach() for n, p in named}
    batch_grads = [p.grad.detach() for _, p in named]

    def sample_loss(values, sequence, row_mask):
        tokens = sequence.unsqueeze(0)
        logits = functional_call(model, values, (tokens,)).logits
        if row_mask is None:
            return per_example_loss(logits, tokens)[0]
        targets = torch.where(row_mask[1:], sequence[1:], torch.full_like(sequence[1:], -100))
        return masked_per_example_loss(logits[:, :-1], targets.unsqueeze(0))[0]

    per_sample = vmap(grad(sample_loss), in_dims=(None, 0, None if mask is None else 0))(
        params, batch, mask)
    params_with_grad = {n: p.detach().clone().requires_grad_(True) for n, p in named}
    target_loss = target.loss(_Bound(model, params_with_grad))
    target_grads = torch.autograd.grad(target_loss, list(params_with_grad.values()))

    clip = cfg.optimizer.clip
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in batch_grads]))
    factor = float(min(1.0, clip / (float(norm) + 1e-6))) if clip > 0 else 1.0
    group = optimizer.param_groups[0]
    lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
    size = batch.shape[0]
    tracin = torch.zeros(size, dtype=torch.float64)
    adam = torch.zeros(size, dtype=torch.float64)
    count = None
    for (name, param), g_batch, g_target in zip(named, batch_grads, target_grads):
        g_i = per_sample[name].reshape(size, -1).double()
        g_t = g_target.reshape(-1).double()
        tracin += g_i @ g_t
        state = optimizer.state.get(param, {})
        count = int(state.get("step", 0)) + 1
        previous = state.get("exp_avg_sq")
        clipped = (g_batch * factor).double().reshape(-1)
        v = (1 - beta2) * clipped ** 2
        if previous is not None:
            v = v + beta2 * previous.double().reshape(-1)
        denominator = (v / (1 - beta2 ** count)).sqrt() + eps
        adam += g_i @ (g_t / denominator)
    momentum = sum((1 - beta1) * beta1 ** k / (1 - beta1 ** (count + k)) for k in range(remaining + 1))
    scale = lr * factor / size
    return {"tracin": tracin * scale, "adam": adam * scale * momentum}


class _Bound:
    """The model called with other parameter values (functional_call), as Target.loss calls it."""

    def __init__(self, model, values):
        self.model, self.values = model, values

    def __call__(self, **kwargs):
        from torch.func import functional_call

        return functional_call(self.model, self.values, (), kwargs)
