"""Progress for long work: a tqdm bar on a terminal, a plain line every few seconds in a log.

Why: a bar redraws itself on every update. Redirected to a file, a 6,000-step run wrote a megabyte
of redraws; a log wants one readable line now and then. Library calls are quiet unless asked
(`progress=True`); command-line tools ask.
"""
from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm

LOG_EVERY_SECONDS = 10.0


def progress(iterable=None, *, total: int | None = None, desc: str = "", unit: str = "it",
             initial: int = 0, enabled: bool = True, leave: bool = False, stream=None):
    """A progress display for `iterable` (or for `update()` calls): a tqdm bar when `stream`
    (default stderr) is a terminal or in a notebook, LogProgress otherwise, nothing when not
    `enabled`."""
    stream = stream or sys.stderr
    in_notebook = "ipykernel" in sys.modules  # tqdm.auto draws a widget there
    if enabled and not in_notebook and not _is_terminal(stream):
        return LogProgress(iterable, total=total, desc=desc, unit=unit, initial=initial,
                           stream=stream)
    return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=not enabled,
                leave=leave, dynamic_ncols=True, **({} if in_notebook else {"file": stream}))


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class LogProgress:
    """tqdm's surface that callers use (iterate, update, set_postfix, close), written as one line
    per LOG_EVERY_SECONDS, plus one at the end."""

    def __init__(self, iterable=None, *, total: int | None, desc: str, unit: str, initial: int,
                 stream) -> None:
        self.iterable, self.desc, self.unit, self.stream = iterable, desc, unit, stream
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.n, self.postfix = total, initial, ""
        self._start = self._last = time.monotonic()
        self._initial, self._closed = initial, False

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, count: int = 1) -> None:
        self.n += count
        now = time.monotonic()
        if now - self._last >= LOG_EVERY_SECONDS:
            self._last = now
            self._write(now)

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{key}={value}" for key, value in values.items())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.n > self._initial:
                self._write(time.monotonic())

    def _write(self, now: float) -> None:
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        rate = (self.n - self._initial) / max(now - self._start, 1e-9)
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {done} {self.unit}{share}, {rate:.1f} {self.unit}/s{extra}",
              file=self.stream, flush=True)
