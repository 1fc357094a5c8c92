"""Branches and their parents: which run answers for a step of a branch's history.

A branch (training/branching.py) starts from its parent's exact state at its branch point N and
stores only what it trained from there: its own keyframe and checkpoint at N, then steps N+1 on.
Its history before N is its parent's. So a read of a branch's weights before N, or of a batch up
to N, is answered by the parent (recursively, for a branch of a branch): every read that takes
`branch=` sees one continuous run, step 0 to the branch's end.
"""
from __future__ import annotations

from zoo.config.names import RunId
from zoo.store.run_store import RunStore


def branch_record(run: RunStore) -> dict | None:
    """The branch's record in its run.json (parent, from_step, until_step, interventions), or None
    for a run that is not a branch."""
    if not run.run_id.branch:
        return None
    return run.read_json("run.json")["branch"]


def parent_of(run: RunStore) -> RunStore | None:
    record = branch_record(run)
    return None if record is None else run.store.run(RunId.parse(record["parent"]))


def weights_owner(run: RunStore, step: int) -> RunStore:
    """The run whose stored or replayed weights are `run`'s at `step`."""
    record = branch_record(run)
    while record is not None and step < record["from_step"]:
        run = parent_of(run)
        record = branch_record(run)
    return run


def batch_owner(run: RunStore, step: int) -> RunStore:
    """The run whose data index holds the batch `run` trained on at `step`."""
    record = branch_record(run)
    while record is not None and step <= record["from_step"]:
        run = parent_of(run)
        record = branch_record(run)
    return run


def lineage(run: RunStore) -> list[tuple[RunStore, int]]:
    """(run, the last step whose batch it answers for; None: to its end), from the run back to
    the first run of its line: what steps_of merges."""
    line: list[tuple[RunStore, int | None]] = [(run, None)]
    record = branch_record(run)
    while record is not None:
        parent = parent_of(run)
        line.append((parent, record["from_step"]))
        run, record = parent, branch_record(parent)
    return line


def root_of(run: RunStore) -> RunStore:
    """The first run of `run`'s line (the run itself when it is no branch): the run whose corpus a
    branch's evaluation probes are drawn from, so that a branch and its parent are measured alike."""
    return lineage(run)[-1][0]


def describe(record: dict) -> str:
    """What a branch changed, in a few words (zoo ls / zoo show)."""
    parts = []
    for item in record.get("interventions", []):
        kind = item["kind"]
        window = f" until step {item['until_step']}" if "until_step" in item else ""
        if kind == "drop_samples":
            parts.append(f"drop {item['count']} samples{window}")
        elif kind == "mask_samples":
            parts.append(f"mask {item['count']} samples (no loss, batches kept){window}")
        elif kind == "drop_documents":
            parts.append(f"drop {len(item['documents'])} documents{window}")
        elif kind == "replace_data":
            parts.append(f"data {item['source']}")
        elif kind == "lr_scale":
            parts.append(f"lr x{item['value']:g}")
        elif kind == "set":
            parts.append(f"{item['field']}={item['value']:g}")
        elif kind == "reinit":
            parts.append(f"reinit {' '.join(item['params'])}")
    steps = f"steps {record['from_step']}..{record['until_step']}"
    return f"from {record['parent']} at step {record['from_step']} ({steps}): " + (
        ", ".join(parts) or "no intervention (null branch)")
