"""How good a dictionary is, stored with it: reconstruction, sparsity, and what the model loses.

- variance explained: 1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over the rows;
- L0: the mean number of active features per row; dead: features never active on the rows;
  dense: features active on more than 10% of them;
- loss recovered: the model's loss with the site's activations replaced by the dictionary's
  reconstruction, between the clean model (1) and the site zero-ablated (0), on held-out data;
- on the superposition model, its decoder against the truth: the mean max cosine of the true
  features (W's represented columns) with the decoder's directions (zoo.eval.superposition_metrics).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

from zoo.models.sites import HIDDEN, Site
from zoo.dictionaries.sparse_autoencoder import SparseAutoencoder

DENSE = 0.1  # active on more than this share of rows: a dense feature
CHUNK = 8192


def feature_density(sae: SparseAutoencoder, data: torch.Tensor) -> torch.Tensor:
    """Each feature's share of the rows of `data` on which it is active, float32 [width]."""
    fired = torch.zeros(sae.width)
    with torch.no_grad():
        for chunk in data.split(CHUNK):
            fired += (sae.encode(chunk) > 0).sum(dim=0).float()
    return fired / data.shape[0]


def reconstruction_quality(sae: SparseAutoencoder, data: torch.Tensor) -> dict[str, float]:
    """Variance explained, L0, dead and dense fractions on `data` [rows, d_in]."""
    error = total = active_rows = 0.0
    fired = torch.zeros(sae.width)
    mean = data.mean(dim=0)
    with torch.no_grad():
        for chunk in data.split(CHUNK):
            x_hat, z = sae(chunk)
            error += float(((chunk - x_hat) ** 2).sum())
            total += float(((chunk - mean) ** 2).sum())
            active = z > 0
            active_rows += float(active.sum())
            fired += active.sum(dim=0).float()
    rows = data.shape[0]
    return {"variance_explained": 1.0 - error / max(total, 1e-30), "l0": active_rows / rows,
            "dead_fraction": float((fired == 0).float().mean()),
            "dense_fraction": float((fired > DENSE * rows).float().mean())}


def loss_recovered(model, site: Site, sae: SparseAutoencoder, inputs: torch.Tensor) -> dict[str, float]:
    """The model's loss clean, with the dictionary spliced in, and with the site zeroed, and the
    share of the zero-ablation's damage the dictionary recovers."""
    def loss(replace) -> float:
        with torch.no_grad(), _replacing(model, site, replace):
            return float(_model_loss(model, site, inputs))

    clean = loss(None)
    spliced = loss(lambda x: sae(x.float())[0].to(x.dtype))
    zeroed = loss(torch.zeros_like)
    span = zeroed - clean
    return {"loss_clean": clean, "loss_spliced": spliced, "loss_zero_ablated": zeroed,
            "loss_recovered": (zeroed - spliced) / span if abs(span) > 1e-12 else float("nan")}


def _model_loss(model, site: Site, inputs: torch.Tensor) -> torch.Tensor:
    if site.name == HIDDEN:
        return model(features=inputs).loss
    return model(input_ids=inputs, labels=inputs).loss


@contextmanager
def _replacing(model, site: Site, replace):
    """Run the model with the site's activations passed through `replace` (None: unchanged)."""
    if replace is None:
        yield
        return
    if site.name == HIDDEN:  # the superposition model: h = W x replaced before the decoder
        original = model.encode
        model.encode = lambda x: replace(original(x))
        try:
            yield
        finally:
            del model.encode
        return
    module = dict(model.named_modules())[site.module]

    def swap(value):
        if isinstance(value, tuple):
            return (swap_tensor(value[0]), *value[1:])
        return swap_tensor(value)

    def swap_tensor(x):
        return replace(x.reshape(-1, x.shape[-1])).reshape(x.shape)

    if site.capture == "input":
        handle = module.register_forward_pre_hook(lambda mod, args: (swap(args[0]), *args[1:]))
    else:
        handle = module.register_forward_hook(lambda mod, args, out: swap(out))
    try:
        yield
    finally:
        handle.remove()
