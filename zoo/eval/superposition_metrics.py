"""Measures of superposition on the ReLU output model, read off its weights (Elhage et al. 2022),
and a ground-truth scorer for any set of directions.

Column W_i of W [m, n] is where feature i lives in the hidden space:
- represented: ||W_i|| > 0.5 (the paper's figures count a feature as learned well above 0);
- norm_i = ||W_i||; interference_i = sum_{j != i} (W_i_hat . W_j)^2, what the other features add
  along feature i's direction (0: it has the direction to itself);
- dimensionality D_i = ||W_i||^2 / sum_j (W_i_hat . W_j)^2 (1: a dimension of its own; 1/2: an
  antipodal pair; 2/5: a pentagon), and the model's dimensions per feature m / ||W||_F^2;
- for m = 2, the k of a k-gon (Chen et al. 2023): the represented features ordered by angle, k of
  them, with `kgon_irregularity` the largest gap's distance from 2 pi / k, relative to it (0: a
  regular k-gon);
- loss: the training loss on a fixed draw of held-out samples (its own data seed, never a run's).
"""
from __future__ import annotations

import math

import numpy as np
import torch

REPRESENTED = 0.5  # ||W_i|| above this: feature i is represented
HELDOUT_SEED = 2**31 - 1  # the held-out draw's data seed (runs use small seeds)
HELDOUT_SAMPLES = 8192
_DIM_TOLERANCE = 0.05  # D_i within this of 1, 1/2, 2/5 counts for that cluster


def weights_of(model) -> tuple[np.ndarray, np.ndarray]:
    """(W [m, n], b [n]) of a superposition model, as float64 numpy arrays."""
    return (model.W.detach().double().cpu().numpy(), model.b.detach().double().cpu().numpy())


def feature_geometry(W: np.ndarray) -> dict[str, np.ndarray]:
    """Per feature: norm, interference, dimensionality (0 for a feature of norm ~0)."""
    norms = np.linalg.norm(W, axis=0)
    safe = np.where(norms > 1e-12, norms, 1.0)
    unit = W / safe
    projections = unit.T @ W  # [n, n]: W_i_hat . W_j
    squared = projections**2
    interference = squared.sum(axis=1) - np.diag(squared)
    dimensionality = np.where(norms > 1e-12, norms**2 / np.maximum(squared.sum(axis=1), 1e-300), 0.0)
    return {"norm": norms, "interference": interference, "dimensionality": dimensionality}


def kgon(W: np.ndarray, *, threshold: float = REPRESENTED) -> tuple[int, float]:
    """For m = 2: (k, irregularity) of the represented features' directions (k = 0: none)."""
    if W.shape[0] != 2:
        raise ValueError(f"a k-gon is a configuration in 2 hidden dimensions; W has {W.shape[0]}")
    norms = np.linalg.norm(W, axis=0)
    chosen = W[:, norms > threshold]
    k = chosen.shape[1]
    if k < 2:
        return k, 0.0
    angles = np.sort(np.arctan2(chosen[1], chosen[0]))
    gaps = np.diff(np.concatenate([angles, angles[:1] + 2 * math.pi]))
    ideal = 2 * math.pi / k
    return k, float(np.max(np.abs(gaps - ideal)) / ideal)


def superposition_measures(model, corpus=None) -> dict[str, float]:
    """Every measure as fields of one metric (zoo eval --metric superposition)."""
    W, _ = weights_of(model)
    m, n = W.shape
    geometry = feature_geometry(W)
    norms, dims = geometry["norm"], geometry["dimensionality"]
    represented = norms > REPRESENTED
    fields = {
        "represented": float(represented.sum()),
        "dims_per_feature": float(m / max((W**2).sum(), 1e-300)),
        "interference_mean": float(geometry["interference"][represented].mean()) if represented.any() else 0.0,
        "interference_max": float(geometry["interference"].max()),
    }
    for name, value in (("dim_1", 1.0), ("dim_half", 0.5), ("dim_two_fifths", 0.4)):
        near = represented & (np.abs(dims - value) < _DIM_TOLERANCE)
        fields[f"share_{name}"] = float(near.sum() / max(represented.sum(), 1))
    if m == 2:
        k, irregular = kgon(W)
        fields["kgon_k"], fields["kgon_irregularity"] = float(k), irregular
    if corpus is not None and getattr(corpus, "drawn", False):
        fields["loss"] = heldout_loss(model, corpus)
    for key in ("norm", "interference", "dimensionality"):
        for i, value in enumerate(geometry[key]):
            fields[f"{key}_{i}"] = float(value)
    return fields


def heldout_loss(model, corpus, *, samples: int = HELDOUT_SAMPLES) -> float:
    """The model's loss on a fixed held-out draw of the corpus's features."""
    features = corpus.samples(np.arange(samples), data_seed=HELDOUT_SEED)
    with torch.no_grad():
        return float(model(features=torch.from_numpy(features)).loss)


def ground_truth_score(directions, W, *, threshold: float = REPRESENTED) -> float:
    """Mean over the true features (W's columns of norm > threshold) of the largest cosine
    similarity with any of `directions` [k, m] (a dictionary's decoder rows, probes): 1 when every
    represented feature has a direction of its own among them. Signs count: -W_i is no match."""
    W = np.asarray(torch.as_tensor(W).detach().double().cpu().numpy() if isinstance(W, torch.Tensor) else W,
                   dtype=float)
    D = np.asarray(torch.as_tensor(directions).detach().double().cpu().numpy(), dtype=float)
    if D.ndim != 2 or D.shape[1] != W.shape[0]:
        raise ValueError(f"directions must be [k, {W.shape[0]}] (one per row, in the hidden space), "
                         f"got shape {tuple(D.shape)}")
    truth = W[:, np.linalg.norm(W, axis=0) > threshold]
    if truth.shape[1] == 0:
        raise ValueError(f"no feature is represented (every ||W_i|| <= {threshold}): nothing to score")
    truth = truth / np.linalg.norm(truth, axis=0)
    lengths = np.linalg.norm(D, axis=1, keepdims=True)
    D = D / np.where(lengths > 1e-12, lengths, 1.0)
    return float((D @ truth).max(axis=0).mean())
