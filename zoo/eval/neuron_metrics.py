"""How easy a model's MLP neurons are to read, measured per neuron on held-out text (`neurons`).

A neuron is one unit of an MLP's hidden layer, what its down-projection reads (TransformerLens'
`blocks.L.mlp.hook_post`): after GELU, after SoLU's LayerNorm, and for a SwiGLU MLP the gate x up
product. Per neuron, over every token of the held-out text:
- firing rate: the share of tokens on which it is above 0 (a sparse neuron fires rarely);
- kurtosis: the excess kurtosis of its activations (Fisher's; heavy tails: it speaks rarely, loudly);
- token entropy: the entropy, in bits, of the token identities at its top-k activating positions
  (0: it fires on one token; log2 k: on k different ones) — token monosemanticity.
Fields: per layer `L{l}.firing`, `L{l}.kurtosis`, `L{l}.token_entropy`, and their means over every
neuron of the model (`firing`, `kurtosis`, `token_entropy`), plus `dead`, the share that never
fires. The per-neuron values are `neuron_table`'s, for Multi-Bootstrap over neurons.
"""
from __future__ import annotations

import numpy as np
import torch

from zoo_common.errors import ZooError
from zoo.eval.evaluating import evaluating
from zoo.models.sites import capturing, resolve_site, valid_sites

TOP_K = 20


def neuron_table(model, tokens, *, top_k: int = TOP_K, batch_size: int = 32) -> dict[str, np.ndarray]:
    """Per neuron (rows: every MLP neuron of every layer, in order): layer, firing rate, kurtosis,
    token entropy of its top-k activations."""
    from scipy.stats import kurtosis

    tokens = torch.as_tensor(tokens).long()
    config = model.config.to_dict()
    names = [s for s in valid_sites(config) if s.endswith("mlp.hook_post")]
    if not names:
        kind = "attention-only" if config.get("attn_only") else f"{config.get('model_type')!r}"
        raise ZooError(f"this model has no MLP neurons to measure ({kind}; neurons are read on "
                       "zoo-toy, gpt_neox and llama MLPs)")
    table = {"layer": [], "firing": [], "kurtosis": [], "token_entropy": []}
    flat = tokens.reshape(-1).numpy()
    for name in names:
        site = resolve_site(name, model)
        chunks = []
        with evaluating(model) as device, capturing(model, site) as seen, torch.no_grad():
            for chunk in tokens.split(batch_size):
                seen.clear()
                model(input_ids=chunk.to(device))
                chunks.append(seen[0].reshape(-1, seen[0].shape[-1]).float().cpu())
        acts = torch.cat(chunks).numpy()  # [tokens, neurons]
        k = min(top_k, acts.shape[0])
        top = np.argpartition(-acts, k - 1, axis=0)[:k]  # [k, neurons] row indices
        layer = int(name.split(".")[1])
        table["layer"] += [layer] * acts.shape[1]
        table["firing"] += (acts > 0).mean(axis=0).tolist()
        table["kurtosis"] += np.nan_to_num(kurtosis(acts, axis=0, fisher=True)).tolist()
        table["token_entropy"] += [_entropy(flat[top[:, j]]) for j in range(acts.shape[1])]
    return {key: np.asarray(values) for key, values in table.items()}


def neuron_measures(model, tokens, *, top_k: int = TOP_K) -> dict[str, float]:
    """The `neurons` metric's fields (module docstring)."""
    table = neuron_table(model, tokens, top_k=top_k)
    fields = {}
    for layer in sorted(set(table["layer"].tolist())):
        mine = table["layer"] == layer
        for key in ("firing", "kurtosis", "token_entropy"):
            fields[f"L{layer}.{key}"] = float(table[key][mine].mean())
    for key in ("firing", "kurtosis", "token_entropy"):
        fields[key] = float(table[key].mean())
    fields["dead"] = float((table["firing"] == 0).mean())
    return fields


def _entropy(ids: np.ndarray) -> float:
    _, counts = np.unique(ids, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())
