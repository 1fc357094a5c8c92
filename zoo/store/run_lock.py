"""The writer lease of a run: one writer per run at a time, refused clearly otherwise.

A lease is the file `lock.json` in the run's folder, created exclusively; it names its holder
(owner text, host, pid, when taken and last refreshed). A second writer of the same run gets a
ZooError naming the holder. Writers of different runs never touch each other's lease.

Stale leases (a writer killed with -9 never releases): on the holder's own host the lease is stale as
soon as its pid is no longer alive; from another host it is stale when it was not refreshed for
`stale_after` seconds (default 6 h; RunStore refreshes it at checkpoint writes, at most once a minute). A stale lease
is taken over automatically. If you are sure a lease is stale sooner, delete `lock.json` by hand.
On object stores (s3://) exclusive creation is check-then-put, so the lease is advisory there: two
writers starting within the same second could both win; it still catches the usual mistake of
launching a run twice.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self

from zoo_common.errors import ZooError
from zoo_common.location import Location

LEASE_FILE = "lock.json"
DEFAULT_STALE_AFTER = 6 * 3600.0
REFRESH_EVERY = 60.0  # seconds; far inside stale_after, and a checkpoint write no longer pays a
# lease write + fsync each time
_held: dict[str, list] = {}  # lease url -> [token, depth, last refresh]: leases this process holds
_held_guard = threading.Lock()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLease:
    """Exclusive writer lease for the run folder `location`; use as a context manager."""

    def __init__(
        self,
        location: Location,
        owner: str,
        *,
        label: str = "",
        stale_after: float = DEFAULT_STALE_AFTER,
    ) -> None:
        self.location = location
        self.owner = owner
        self.label = label or location.url
        self.stale_after = stale_after
        self.url = f"{location.url}/{LEASE_FILE}"

    # --- state of the lease file --------------------------------------------------------------
    def holder(self) -> dict | None:
        """The current lease record, or None when nobody holds the run."""
        try:
            return json.loads(self.location.read_bytes(LEASE_FILE))
        except ZooError:
            return None
        except ValueError:  # torn lease from a writer killed while creating it: treat as stale
            return {"owner": "unknown (damaged lease)", "host": "", "pid": -1, "refreshed": 0}

    def is_stale(self, record: dict) -> bool:
        if record.get("host") == socket.gethostname() and isinstance(record.get("pid"), int):
            return not _pid_alive(record["pid"])
        return time.time() - float(record.get("refreshed", 0)) > self.stale_after

    def held_here(self) -> bool:
        return self.url in _held

    # --- taking and giving back --------------------------------------------------------------
    def acquire(self) -> None:
        with _held_guard:
            if self.url in _held:
                _held[self.url][1] += 1
                return
            token = uuid.uuid4().hex
            for _ in range(3):
                if self.location.create_exclusive(LEASE_FILE, self._record(token)):
                    _held[self.url] = [token, 1, time.monotonic()]
                    return
                record = self.holder()
                if record is None:
                    continue  # released between our two looks: try again
                if not self.is_stale(record):
                    raise ZooError(self._refusal(record))
                self.location.remove(LEASE_FILE)
            raise ZooError(
                f"could not take the writer lease of {self.label} ({self.url}): it keeps "
                f"changing hands; is another writer starting at the same time?"
            )

    def refresh(self) -> None:
        """Record that the holder is alive (matters for stale detection from other hosts)."""
        entry = _held.get(self.url)
        if entry and time.monotonic() - entry[2] >= REFRESH_EVERY:
            self.location.write_atomic(LEASE_FILE, self._record(entry[0]))
            entry[2] = time.monotonic()

    def release(self) -> None:
        with _held_guard:
            entry = _held.get(self.url)
            if not entry:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del _held[self.url]
            record = self.holder()
            if record and record.get("token") == entry[0]:
                self.location.remove(LEASE_FILE)

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _record(self, token: str) -> bytes:
        now = time.time()
        return json.dumps(
            {
                "owner": self.owner,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "token": token,
                "acquired": now,
                "refreshed": now,
            }
        ).encode()

    def _refusal(self, record: dict) -> str:
        age = time.time() - float(record.get("refreshed", 0))
        return (
            f"{self.label} is being written by another writer: {record.get('owner')!r} "
            f"(host {record.get('host')}, pid {record.get('pid')}, last seen {age:.0f}s ago). "
            f"Only one writer per run is allowed; wait for it to finish, or if you are sure it "
            f"is dead, delete {self.url}"
        )


@contextmanager
def write_guard(location: Location, *, label: str) -> Iterator[None]:
    """Hold the run's lease for one write unless this process already holds it (then refresh it)."""
    lease = RunLease(location, f"zoo write (pid {os.getpid()})", label=label)
    if lease.held_here():
        lease.refresh()
        yield
        return
    with lease:
        yield
