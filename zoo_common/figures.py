"""A matplotlib figure written as a PNG that appears whole or not at all, its folder made."""
from __future__ import annotations

import os

from zoo_common.atomic_files import atomic_path


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 120) -> str:
    """Write `fig` to `path` (PNG) atomically and close it; returns the path."""
    import matplotlib.pyplot as plt

    path = os.fspath(path)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return path
