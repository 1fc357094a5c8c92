"""The attributions already stored for a run, read without computing anything (zoo serve).

`zoo.attribute` recomputes when its stored scores are stale; a page cannot wait for that, and must
never show scores computed from another run's bytes. So here a stored attribution is shown only
when its record still matches the run (the run's record and data index digests, as `zoo.attribute`
checks them) and its Parquet file matches its sha256; otherwise the error says why and gives the
command that recomputes it.
"""
from __future__ import annotations

import hashlib
import io
import json

import pyarrow.parquet as pq

from zoo.attribution.attribution import FOLDER, Attribution, run_digests
from zoo.store.run_store import RunStore
from zoo_common.errors import IntegrityError, NotFoundError, ZooError


def _prefix(run: RunStore) -> str:
    rid = run.run_id
    return f"{rid.size}-seed-{rid.seed}{'@' + rid.branch if rid.branch else ''}."


def _folder(run: RunStore) -> str:
    return f"evals/{run.run_id.family}/{FOLDER}"


def stored_attributions(run: RunStore) -> list[dict]:
    """One entry per stored attribution of `run`: key, target, window, rows, seconds, and whether
    it is current (computed from this run as it is now)."""
    digests = run_digests(run)
    entries = []
    for name in run.store.location.list(_folder(run)):
        if not (name.startswith(_prefix(run)) and name.endswith(".json")):
            continue
        meta = json.loads(run.store.location.read_bytes(f"{_folder(run)}/{name}"))
        source = meta.get("source", {})
        entries.append({"key": name[:-len(".json")], "target": source.get("target"),
                        "target_words": meta.get("target_words", source.get("target")),
                        "from_step": source.get("window", [None, None])[0],
                        "until_step": source.get("window", [None, None])[1],
                        "rows": meta.get("rows"), "seconds": meta.get("seconds"),
                        "current": all(source.get(k) == v for k, v in digests.items())})
    return sorted(entries, key=lambda e: (e["from_step"] or 0, e["until_step"] or 0, e["key"]))


def read_stored(run: RunStore, key: str) -> Attribution:
    """The stored attribution `key` of `run`, checked: NotFoundError lists the keys there are, a
    stale record says how to recompute it, a damaged file is an IntegrityError."""
    entries = {e["key"]: e for e in stored_attributions(run)}
    if key not in entries:
        raise NotFoundError(f"{run.run_id.key} has no stored attribution {key!r}; stored: "
                            f"{', '.join(entries) or 'none (zoo attribute computes one)'}")
    entry, path = entries[key], f"{_folder(run)}/{key}"
    rid = run.run_id
    if not entry["current"]:
        raise ZooError(
            f"the stored attribution {key} was computed from another state of {rid.key} (the "
            f"run or its data was retrained since); recompute it: zoo attribute {rid.model_name}"
            f"{'@' + rid.branch if rid.branch else ''} --seed {rid.seed} --target "
            f"{entry['target']} --from-step {entry['from_step']} --until-step {entry['until_step']}")
    meta = json.loads(run.store.location.read_bytes(path + ".json"))
    data = run.store.location.read_bytes(path + ".parquet")
    if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        raise IntegrityError(f"{run.store.url}/{path}.parquet does not match its recorded sha256: "
                             f"the file is damaged; `zoo attribute ... --recompute` writes it again")
    return Attribution(rid.model_name, rid.seed, rid.branch, entry["target"],
                       entry["target_words"], entry["from_step"], entry["until_step"],
                       pq.read_table(io.BytesIO(data)), float(meta["seconds"]), path,
                       meta["source"].get("heldout"))
