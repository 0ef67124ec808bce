"""Signs of life for loops that run for minutes (AIS, RAISE, importance-weighted bounds).

Where a stage's progress shows is decided when it starts:

* nowhere when ``$CI`` is set (CI logs stay short);
* as a bar with an ETA on stderr when stderr is an interactive terminal;
* otherwise as lines with an ETA in the Python log (logger ``genbench.core.progress``,
  INFO) at every tenth of the stage or every 30 s, whichever comes first; when
  nothing configured logging, the lines go to stderr instead of being dropped.

A stage that finishes within :data:`DELAY_S` shows nothing, so quick evaluations
(every epoch's validation NLL, small test RBMs) stay quiet.

A stage also says how many of an evaluation's counted sizes its total spans (``dims``: test examples,
temperatures), and :func:`timed_stages` hands every closed stage to a watcher: the planner
(:mod:`genbench.bench.plan`) times an evaluation shrunk along those sizes and scales each stage back up.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, TextIO

DELAY_S = 2.0  # silent for the first seconds of a stage
MARKS = 10  # log mode: a line at every tenth of the stage ...
EVERY_S = 30.0  # ... or after this long without one
BAR_EVERY_S = 0.2  # bar mode: redraw at most this often
BAR_WIDTH = 30

log = logging.getLogger(__name__)


@dataclass
class Stage:
    """A closed stage as a watcher sees it: ``dims`` of the evaluation's counted sizes made its ``total``."""

    label: str
    total: int
    dims: int
    seconds: float


_watchers: list[list[Stage]] = []


@contextmanager
def timed_stages() -> Iterator[list[Stage]]:
    """Collect every stage that closes inside the block (nested blocks each get them all)."""
    stages: list[Stage] = []
    _watchers.append(stages)
    try:
        yield stages
    finally:
        _watchers.remove(stages)


def display_mode(stream: TextIO) -> str:
    """``off`` under CI, ``bar`` on an interactive ``stream``, else ``log``."""
    if os.environ.get("CI"):
        return "off"
    isatty = getattr(stream, "isatty", None)
    return "bar" if isatty is not None and isatty() else "log"


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class Progress:
    """Progress of one stage of ``total`` steps: ``update(n)`` as steps finish, then ``close()`` (or ``with``).

    ``dims``: how many of the evaluation's counted sizes (test examples, temperatures) ``total`` is the
    product of (0: none, e.g. a fixed number of draws). ``clock`` and ``stream`` (default:
    ``time.monotonic``, ``sys.stderr``) are there for the tests. An update costs a clock read and a comparison.
    """

    def __init__(self, label: str, total: int, *, dims: int = 1, clock: Callable[[], float] = time.monotonic,
                 stream: TextIO | None = None):
        self.label, self.total, self.done, self.dims = label, max(int(total), 0), 0, dims
        self.closed = False
        self.clock, self.stream = clock, sys.stderr if stream is None else stream
        self.mode = display_mode(self.stream)
        self.start = self.last = clock()
        self.mark = 1  # the next tenth to log (counted in integers: no float drift)
        self.shown = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 1.0

    def status(self, now: float) -> str:
        elapsed, f = now - self.start, self.fraction()
        eta = elapsed * (1 - f) / f if f > 0 else math.inf
        return (f"{100 * f:.0f}% ({self.done}/{self.total}), {duration(elapsed)} elapsed, "
                f"ETA {duration(eta) if math.isfinite(eta) else '?'}")

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.mode == "off":
            return
        now = self.clock()
        if now - self.start < DELAY_S:
            return
        if self.mode == "bar":
            if not self.shown or now - self.last >= BAR_EVERY_S:
                self._draw(now)
        elif self.done * MARKS >= self.mark * self.total or now - self.last >= EVERY_S:
            self.mark = self.done * MARKS // max(self.total, 1) + 1
            self._line(f"{self.label}: {self.status(now)}", now)

    def close(self) -> None:
        """End the stage: a finished bar or a closing line, if anything was shown; watchers get its time."""
        if not self.closed:
            self.closed = True
            stage = Stage(self.label, self.total, self.dims, self.clock() - self.start)
            for stages in _watchers:
                stages.append(stage)
        if not self.shown:
            return
        now = self.clock()
        if self.mode == "bar":
            self._draw(now)
            self.stream.write("\n")
            self.stream.flush()
        else:
            self._line(f"{self.label}: done, {self.done} in {duration(now - self.start)}", now)
        self.shown = False

    def _draw(self, now: float) -> None:
        filled = int(BAR_WIDTH * self.fraction())
        bar = "█" * filled + "·" * (BAR_WIDTH - filled)
        self.stream.write(f"\r{self.label} |{bar}| {self.status(now)}  ")
        self.stream.flush()
        self.shown, self.last = True, now

    def _line(self, text: str, now: float) -> None:
        if log.hasHandlers():
            log.info(text)
        else:  # logging not configured: INFO would be dropped
            print(text, file=self.stream, flush=True)
        self.shown, self.last = True, now
