"""The context every metric measures in: eval mode, no autograd, the caller's mode given back."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def evaluating(model) -> Iterator[torch.device]:
    """Eval mode and no autograd for the call; yields the model's device. The caller's
    train/eval mode is restored, so a metric never leaves a training model in eval mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield next(model.parameters()).device
    finally:
        model.train(was_training)
