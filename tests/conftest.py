"""Fixtures more than one test file trains: each is built once per test session."""
from __future__ import annotations

import pytest
from micro_family import write_manifest

EVALUATED_CHECKPOINTS = {"log_spaced_until": 4, "every": 4, "keyframe_every": 4}  # 0 1 2 4 8 12


@pytest.fixture(scope="session")
def evaluated_micro_store(tmp_path_factory):
    """micro (seeds 1, 2; 12 steps), held-out loss evaluated at every stored step."""
    from training.sweep import train_family
    from zoo.eval.evaluate import evaluate_family
    from zoo.store.store import Store

    folder = tmp_path_factory.mktemp("evaluated_micro")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_CACHE", str(folder / "cache"))
        store = Store.open(str(folder / "store"))
        train_family(write_manifest(folder, steps=12, checkpoints=EVALUATED_CHECKPOINTS),
                     store=store, threads=2, progress=False)
        evaluate_family("micro", ["loss"], store=store, progress=False)
    return store
