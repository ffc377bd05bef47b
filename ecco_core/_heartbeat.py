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
"""

from __future__ import annotations

import sys
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
