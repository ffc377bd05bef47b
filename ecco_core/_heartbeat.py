"""Progress from work that reports none: a third-party fit or one long forward pass still calls ``progress``.

scikit-learn's estimators take no callback, and one forward pass of a batch
through the model can take a minute under load, so a progress bar would
stand still where it was. :func:`heartbeat` calls
``progress(fraction, message)`` at least every ``every_s`` seconds while the
block runs, with the fraction it had when the block began (nothing measures
how far such work is) and the caller's message. The calls come from the
thread running the block, between the Python calls of the work itself (a
trace function on that thread only, as a profiler installs), so a caller
whose ``progress`` raises to stop the work (the dashboard's Stop) stops the
fit there too. Under a debugger or a coverage tracer, which own the trace
function, the block runs as it is and reports nothing more.

A batch whose end is reported as a step (a batch of erased copies, of
patched or ablated runs) beats through :func:`batch_heartbeat`, only within
:func:`heartbeats` on the same thread: a caller that shows the time (the
dashboard's status box, bench/estimates.py's longest wait) asks for them
there, and a caller that counts the steps sees the steps alone.
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

#: Seconds between two reports, at most (give or take one Python call of the work).
EVERY_S = 1.0


@contextmanager
def heartbeat(progress: Callable[[float, str], None] | None, fraction: float, message: str,
              every_s: float = EVERY_S) -> Iterator[None]:
    """Run the block, calling ``progress(fraction, message)`` every ``every_s`` seconds from this thread."""
    if progress is None or sys.gettrace() is not None:
        yield
        return
    due = [time.perf_counter() + every_s]

    def beat(frame, event, arg):
        now = time.perf_counter()
        if now >= due[0]:
            due[0] = now + every_s
            progress(fraction, message)  # an exception here (a stop) leaves the work at this call
        return None  # no tracing inside the called function's lines

    sys.settrace(beat)
    try:
        yield
    finally:
        sys.settrace(None)


_wanted = threading.local()


@contextmanager
def heartbeats() -> Iterator[None]:
    """Within this block, on this thread, :func:`batch_heartbeat` beats too (nested blocks keep it on)."""
    depth = getattr(_wanted, "depth", 0)
    _wanted.depth = depth + 1
    try:
        yield
    finally:
        _wanted.depth = depth


@contextmanager
def batch_heartbeat(progress: Callable[[float, str], None] | None, fraction: float, message: str) -> Iterator[None]:
    """:func:`heartbeat` every :data:`EVERY_S` around one batch, within :func:`heartbeats` only (else the block runs
    as it is)."""
    with heartbeat(progress if getattr(_wanted, "depth", 0) else None, fraction, message, EVERY_S):
        yield
