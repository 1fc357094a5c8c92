"""`zoo.training_data`: the exact batches a run trained on around a step, for other tools.

What training-dynamics tools take: devinterp samples around a checkpoint on the data that made
it (1.x: `estimate_learning_coeff_with_summary(model, loader, ...)` takes a DataLoader; 2.x:
`devinterp.slt.llc.llc(model, dataset, ...)` a datasets.Dataset with "input_ids"); SAELens takes
the same Dataset; influence methods and gradient probes want either.
- format="torch": a DataLoader, one item per step: the step's whole batch, ready for a stock HF
  model, `{"input_ids": [B, T], "labels": [B, T]}`, with `labels` -100 where the run's loss did not
  count (a task's prompt tokens), so `model(**item).loss` is the step's training loss;
- format="datasets": a datasets.Dataset, one row per sample, in training order, with the columns
  "input_ids", "labels", "step" and "sample" (the sample's id in the run's corpus).
"""
from __future__ import annotations

import os

import torch

from zoo_common.arguments import whole_number
from zoo_common.errors import ZooError
from zoo.registry.batches import batch_values, run_data
from zoo.store.catalog import open_run
from zoo.store.lineage import batch_owner
from zoo.store.store import Store


class StepBatches(torch.utils.data.Dataset):
    """Item k: the batch of step `first + k` of a run (a branch's early steps: its parent's)."""

    def __init__(self, run, first: int, n_steps: int) -> None:
        self.run, self.first, self.n_steps = run, first, n_steps
        for step in (first, first + n_steps - 1):  # both ends exist, or say what does
            run_data(batch_owner(run, step))[1].batch_ids(step)

    def __len__(self) -> int:
        return self.n_steps

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        return self.item(k)[1]

    def item(self, k: int) -> tuple:
        """(the step's sample ids, its batch as __getitem__ gives it)."""
        if not 0 <= k < self.n_steps:
            raise IndexError(k)
        step = self.first + k
        corpus, index = run_data(batch_owner(self.run, step))
        ids = index.batch_ids(step)
        if getattr(corpus, "drawn", False):  # the superposition model: model(**item).loss
            return ids, {"features": torch.from_numpy(batch_values(corpus, index, ids))}
        tokens = torch.from_numpy(corpus.samples(ids))
        mask = corpus.loss_mask(ids)
        labels = tokens.clone() if mask is None else tokens.masked_fill(~torch.from_numpy(mask), -100)
        return ids, {"input_ids": tokens, "labels": labels}


def training_data(name: str, *, seed: int, step: int, n_steps: int = 1,
                  store: str | os.PathLike | Store | None = None, branch: str | None = None,
                  format: str = "torch", shuffle: bool = False,
                  generator: torch.Generator | None = None):
    """The batches of steps step .. step + n_steps - 1 in training order: a DataLoader (one
    step's batch per item; `shuffle=True` with a seeded `generator` for samplers that want random
    order), or with format="datasets" a datasets.Dataset (one sample per row)."""
    step = whole_number(step, "step", minimum=1)
    n_steps = whole_number(n_steps, "n_steps", minimum=1)
    if format not in ("torch", "datasets"):
        raise ZooError(f"format must be 'torch' (a DataLoader) or 'datasets' (a datasets.Dataset), "
                       f"got {format!r}")
    run = open_run(name, seed=seed, store=store, branch=branch)
    try:
        dataset = StepBatches(run, step, n_steps)
    except ZooError as exc:
        raise ZooError(f"training_data({name!r}, seed={seed}, step={step}, n_steps={n_steps}): "
                       f"{exc}") from None
    if format == "datasets":
        return _as_rows(dataset)
    return torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=shuffle,
                                       generator=generator)


def _as_rows(batches: StepBatches):
    import datasets

    columns = {"step": [], "sample": []}
    for k in range(len(batches)):
        step = batches.first + k
        ids, item = batches.item(k)
        for key, values in item.items():  # input_ids and labels, or features
            columns.setdefault(key, []).extend(values.tolist())
        columns["step"] += [step] * len(ids)
        columns["sample"] += ids.tolist()
    return datasets.Dataset.from_dict(columns)
