"""The activations a dictionary trains on: a site of a run's model at one step, on data that is
named exactly — the run's own training batches in a window of steps (as trained:
zoo.training_data), or its held-out set — so anyone can gather the very same activations again.

Token models: every position of every sequence, [tokens, width], with each row's (sample id,
position) kept, so a feature's top activations can be traced to documents and training steps.
The superposition model: h = W x for each drawn sample, [samples, hidden].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from zoo_common.errors import ArgumentError
from zoo.models.sites import HIDDEN, Site, capturing

CHUNK = 64  # sequences per forward pass


@dataclass(frozen=True)
class DataWindow:
    """Where the activations come from: training steps first..last (inclusive), or held-out."""

    source: str  # "training" or "heldout"
    first: int = 0
    last: int = 0

    @classmethod
    def from_record(cls, record: dict) -> DataWindow:
        """The window a dictionary's record names."""
        if record["source"] == "heldout":
            return cls("heldout")
        first, last = record["steps"]
        return cls("training", int(first), int(last))

    def record(self) -> dict:
        return ({"source": "training", "steps": [self.first, self.last]} if self.source == "training"
                else {"source": "heldout"})

    @classmethod
    def parse(cls, spec, *, step: int, last_step: int, default_steps: int) -> DataWindow:
        """`heldout`, `A:B` (training steps A..B), or None: the `default_steps` training steps
        that end at `step` (the data that made the weights), or the first `default_steps` steps
        when `step` comes earlier than that (the record says which)."""
        if spec == "heldout":
            return cls("heldout")
        if spec is None:
            first = max(1, step - default_steps + 1)
            last = min(last_step, first + default_steps - 1)
        else:
            try:
                first, last = (int(part) for part in str(spec).split(":"))
            except ValueError:
                raise ArgumentError(f"data window {spec!r}: give A:B (training steps A to B) or "
                                    f"'heldout'") from None
        if not 1 <= first <= last <= last_step:
            raise ArgumentError(f"data window {first}:{last} is outside the run: it trained steps "
                                f"1..{last_step}")
        return cls("training", first, last)


@dataclass
class Activations:
    """Rows of one site's activations, with where each row came from."""

    values: torch.Tensor  # float32 [rows, width]
    samples: np.ndarray  # int64 [rows]: the sample id (-1: held-out)
    positions: np.ndarray  # int64 [rows]: the position in the sample (0 for feature vectors)
    steps: np.ndarray  # int64 [rows]: the training step whose batch held the sample (0: held-out)


def collect(model, site: Site, batches: list[tuple[int, np.ndarray, torch.Tensor]]) -> Activations:
    """The site's activations on `batches`: (step, sample ids, inputs) each, in order."""
    values, samples, positions, steps = [], [], [], []
    model.eval()
    with torch.no_grad():
        for step, ids, inputs in batches:
            for start in range(0, len(inputs), CHUNK):
                chunk = inputs[start:start + CHUNK]
                chunk_ids = ids[start:start + CHUNK]
                rows = _one_pass(model, site, chunk)
                per = rows.shape[0] // len(chunk)
                values.append(rows)
                samples.append(np.repeat(chunk_ids, per))
                positions.append(np.tile(np.arange(per), len(chunk)))
                steps.append(np.full(rows.shape[0], step, dtype=np.int64))
    return Activations(torch.cat(values).float(), np.concatenate(samples).astype(np.int64),
                       np.concatenate(positions).astype(np.int64), np.concatenate(steps))


def _one_pass(model, site: Site, inputs: torch.Tensor) -> torch.Tensor:
    if site.name == HIDDEN:
        return model.encode(inputs.float())
    with capturing(model, site) as seen:
        model(input_ids=inputs)
    captured = seen[0]
    return captured.reshape(-1, captured.shape[-1])
