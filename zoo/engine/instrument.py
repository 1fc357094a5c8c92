"""Instrumented replay: everything about one update a training-dynamics study asks for.

For step N: the model before and after the update, the batch (tokens and text), the loss of each
example, the gradient of every parameter exactly as the update used it (before clipping), and
per-example gradients of a chosen parameter through torch.func. It is produced by the same
`training_step` training ran, observed from inside, so it is the update that happened.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from zoo_common.arguments import whole_number
from zoo.store.store import Store


@dataclass
class StepInspection:
    run: str
    step: int
    model_before: torch.nn.Module
    model_after: torch.nn.Module
    batch: torch.Tensor  # [B, T] token ids
    texts: list[str]
    per_example_loss: torch.Tensor  # [B]
    gradients: dict[str, torch.Tensor]  # parameter name -> gradient of the batch loss
    loss_mask: torch.Tensor | None = None  # [B, T] for a task corpus: the tokens the loss is on

    def per_example_gradients(self, parameter: str) -> torch.Tensor:
        """[B, *shape]: the gradient of each example's loss w.r.t. `parameter` (model before)."""
        return per_example_gradients(self.model_before, self.batch, parameter, loss_mask=self.loss_mask)


def inspect_step(name: str, *, seed: int, step: int, store: str | Store | None = None,
                 progress: bool = False) -> StepInspection:
    from zoo.store.corpora import open_corpus
    from zoo.store.catalog import open_run, open_store
    from zoo.engine.step_replay import advance

    store = open_store(store)
    run = open_run(name, seed=seed, store=store)
    step = whole_number(step, "step")
    seen: dict = {}

    def observe(model, batch, outputs):
        seen["before"] = copy.deepcopy(model).eval()
        seen["batch"] = batch.detach().cpu()
        targets = getattr(outputs, "targets", None)
        if targets is not None:  # a masked loss: rebuild the [B, T] mask from its targets
            mask = torch.zeros(batch.shape, dtype=torch.bool)
            mask[:, outputs.positions.cpu() + 1] = targets.cpu() != -100
            seen["loss_mask"] = mask
        targets = getattr(outputs, "targets", None)  # a masked (task) loss: its targets only
        seen["per_example_loss"] = (per_example_loss(outputs.logits.detach(), batch) if targets is None
                                    else masked_per_example_loss(outputs.logits.detach(), targets)).cpu()
        seen["gradients"] = {n: p.grad.detach().clone().cpu()
                             for n, p in model.named_parameters() if p.grad is not None}

    previous_threads = torch.get_num_threads()
    try:
        state = advance(run, step, store=store, observe=observe, progress=progress)
    finally:
        torch.set_num_threads(previous_threads)
    corpus = open_corpus(store, run.read_json("run.json")["corpus_fingerprint"])
    # the observed weights were captured after backward, i.e. before this step's update
    for param in seen["before"].parameters():
        param.grad = None
    return StepInspection(
        run=run.run_id.key, step=step, model_before=seen["before"], model_after=state.model.eval(),
        batch=seen["batch"], texts=[corpus.decode(row.tolist()) for row in seen["batch"]],
        per_example_loss=seen["per_example_loss"], gradients=seen["gradients"],
        loss_mask=seen.get("loss_mask"),
    )


def per_example_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of each sequence: [B]. Their mean is the batch loss."""
    losses = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten(),
                             reduction="none")
    return losses.view(tokens.shape[0], -1).mean(dim=1)


def masked_per_example_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each sequence over its targets (-100: not a target): [B]."""
    losses = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100,
                             reduction="none").view(targets.shape)
    valid = (targets != -100).sum(dim=1).clamp(min=1)
    return losses.sum(dim=1) / valid


def per_example_gradients(model: torch.nn.Module, tokens: torch.Tensor, parameter: str, *,
                          loss_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-example gradients of one parameter with torch.func (vmap over examples); with
    `loss_mask`, of each example's loss on its masked targets, as the training step defines it."""
    from torch.func import functional_call, grad, vmap

    params = {n: p.detach() for n, p in model.named_parameters()}
    if parameter not in params:
        from zoo_common.errors import ZooError

        raise ZooError(f"no parameter {parameter!r}; parameters: {', '.join(params)}")

    def loss_of(value: torch.Tensor, sequence: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        batch = sequence.unsqueeze(0)
        logits = functional_call(model, {**params, parameter: value}, (batch,)).logits
        if mask is None:
            return per_example_loss(logits, batch)[0]
        targets = torch.where(mask[1:], sequence[1:], torch.full_like(sequence[1:], -100))
        return masked_per_example_loss(logits[:, :-1], targets.unsqueeze(0))[0]

    model.eval()
    return vmap(grad(loss_of), in_dims=(None, 0, None if loss_mask is None else 0))(
        params[parameter], tokens, loss_mask)
