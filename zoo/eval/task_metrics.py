"""Metrics of a task corpus (data_index/tasks.py): accuracy and loss on the train and test splits,
and the Fourier progress measure of modular arithmetic.

Accuracy counts a sample right when every one of its masked targets (the answer) is the argmax
prediction; loss is the mean cross-entropy over those targets, as the training step defines it.
The split is the run's own (its data seed), so "test" is exactly the pairs that run never saw.

The progress measure follows Nanda et al. 2023: a model that has learned modular addition embeds
the numbers 0..p-1 on a few key frequencies. `fourier_key_share` is the share of the number
embeddings' squared norm that lies in the top `n_key` frequencies of the discrete Fourier basis on
0..p-1 (cos and sin of 2*pi*k*x/p together); about n_key/((p-1)/2) for random embeddings, near 1
after the algorithm has formed.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from zoo.eval.evaluating import evaluating
from zoo_common.errors import ZooError

KEY_FREQUENCIES = 5  # Nanda et al. 2023 find five key frequencies in their p = 113 models


def split_accuracy(model, corpus, ids: np.ndarray, *, batch_size: int = 4096) -> tuple[float, float]:
    """(accuracy, mean loss) of `model` on samples `ids` of a masked task corpus."""
    if corpus.loss_mask([0]) is None:
        raise ZooError("accuracy is a task metric: this corpus has no loss mask (train on "
                       "builtin:modular, or measure loss instead)")
    if len(ids) == 0:
        return math.nan, math.nan
    right, loss_sum, count = 0, 0.0, 0
    with evaluating(model) as device:
        for start in range(0, len(ids), batch_size):
            chunk = ids[start:start + batch_size]
            tokens = torch.from_numpy(corpus.samples(chunk)).to(device)
            mask = torch.from_numpy(corpus.loss_mask(chunk)).to(device)
            logits = model(input_ids=tokens).logits[:, :-1].float()
            targets, wanted = tokens[:, 1:], mask[:, 1:]
            losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                     reduction="none").view(targets.shape)
            loss_sum += float(losses[wanted].sum())
            count += int(wanted.sum())
            correct = (logits.argmax(-1) == targets) | ~wanted
            right += int(correct.all(dim=1).sum())
    return right / len(ids), loss_sum / max(count, 1)


def task_accuracy(model, corpus, *, data_seed: int) -> dict[str, float]:
    """train_acc, test_acc, train_loss, test_loss on the run's own split."""
    fields = {}
    for split, ids in (("train", corpus.train_ids(data_seed)), ("test", corpus.test_ids(data_seed))):
        acc, loss = split_accuracy(model, corpus, ids)
        fields[f"{split}_acc"], fields[f"{split}_loss"] = acc, loss
    return fields


def fourier_key_share(model, p: int, *, n_key: int = KEY_FREQUENCIES) -> dict[str, float]:
    """Share of the number embeddings' squared norm in their top `n_key` Fourier frequencies."""
    embed = model.get_input_embeddings().weight.detach().float().cpu()
    if embed.shape[0] < p:
        raise ZooError(f"the model's vocabulary ({embed.shape[0]}) has fewer than p = {p} tokens")
    numbers = embed[:p]  # tokens 0..p-1 are the numbers (data_index/tasks.py)
    x = torch.arange(p, dtype=torch.float32)
    frequencies = torch.arange(1, (p - 1) // 2 + 1, dtype=torch.float32)
    angles = 2 * math.pi * frequencies[:, None] * x[None, :] / p  # [K, p]
    basis = torch.cat([torch.ones(1, p), torch.cos(angles), torch.sin(angles)])
    basis = basis / basis.norm(dim=1, keepdim=True)  # orthonormal rows (p odd: a complete basis)
    power = (basis @ numbers).pow(2).sum(dim=1)  # squared norm along each basis direction
    k = len(frequencies)
    per_frequency = power[1:k + 1] + power[k + 1:2 * k + 1]
    total = float(power.sum())
    top = torch.topk(per_frequency, min(n_key, k))
    fields = {"key_share": float(top.values.sum()) / total if total > 0 else math.nan}
    for rank, freq in enumerate(top.indices.tolist(), start=1):
        fields[f"key{rank}"] = float(freq + 1)
    return fields
