"""Requests benchmark: how many requests one `zoo.load` makes on an S3-protocol store.

On `s3://` or `http://` every read of a record or listing is a round trip, so the count is what a
researcher waits for far from the store. Trains the micro test family (one seed, 24 steps,
keyframes every 8) into a local store, copies it to a real S3-protocol server on loopback (moto's
server mode), and counts the requests the server answers (from its own request log), by kind:

- replayed, cold:  `zoo.load` of a step that was not stored, with an empty cache (replayed from
                   the keyframe before it, then cached);
- replayed, warm:  the same call again (the cached folder is compared with the store first);
- stored, cold:    `zoo.load` of a stored step with an empty cache;
- stored, warm:    the same call again.

    python benchmarks/bench_requests.py
"""
from __future__ import annotations

import collections
import logging
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

_REQUEST = re.compile(r'"(GET|HEAD|PUT|POST|DELETE) ([^ ]+) HTTP')


class _Counter(logging.Handler):
    """Counts the requests in werkzeug's request log (the server's own record of what it served)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.requests: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = _REQUEST.search(record.getMessage())
        if match:
            self.requests.append((match[1], match[2]))


def _kind(method: str, path: str) -> str:
    if "list-type=2" in path or "prefix=" in path:
        return "list"
    name = path.split("?")[0].rsplit("/", 1)[-1]
    if "/blobs/" in path:
        return f"{method} blob"
    return f"{method} {name if name.endswith('.json') else 'other'}"


def main() -> int:
    import zoo
    from micro_family import write_manifest
    from s3_server import s3_bucket
    from training.sweep import train_family
    from zoo.store.store import Store
    from zoo.store.transfer import copy_runs

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        local = Store.open(str(tmp / "local"))
        train_family(write_manifest(tmp, seeds=[1]), store=local, threads=2, progress=False)
        with s3_bucket() as (url, options):
            remote = Store.open(url + "/zoo", storage_options=options)
            copy_runs(local, remote)
            counter = _Counter()
            werkzeug = logging.getLogger("werkzeug")
            werkzeug.setLevel(logging.INFO)
            werkzeug.addHandler(counter)
            rows = []
            for label, step, cache in (("replayed, cold", 13, "c1"), ("replayed, warm", 13, "c1"),
                                       ("stored, cold", 12, "c2"), ("stored, warm", 12, "c2")):
                os.environ["ZOO_CACHE"] = str(tmp / cache)
                counter.requests.clear()
                zoo.load("micro-1l32", seed=1, step=step,
                         store=Store.open(url + "/zoo", storage_options=options))
                kinds = collections.Counter(_kind(*r) for r in counter.requests)
                rows.append((label, len(counter.requests), kinds))
    print("| zoo.load of | requests | by kind |")
    print("|---|---:|---|")
    for label, total, kinds in rows:
        detail = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
        print(f"| {label} | {total} | {detail} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
