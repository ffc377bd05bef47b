"""One BLAS thread for numpy's linear algebra on the many small matrices of an analysis.

Similarity makes thousands of LAPACK calls on matrices of a few hundred
rows (a decomposition per layer, an eigendecomposition per pair of layers).
With OpenBLAS' default of one thread per core, every call wakes and waits
for the other threads: on the shared 2-core machine (load 13-23), 200
eigendecompositions of 56 x 56 matrices took 30 s on two threads and 1.2 s on
one, and a similarity matrix over 56 positions 4-11x longer for 10-25x the
CPU time; the time followed the load rather than the work. One thread keeps
the time close to the work's own.

OpenBLAS (the pthreads build in numpy's and scipy's wheels) has one thread
pool for the whole process, and the app runs several sessions' analyses in
threads of one process. A lock and a count make nested and concurrent users
share one limit, set by the first to enter and lifted by the last to leave,
so the original thread count always comes back. threadpoolctl lets only one
"controlling" Python thread change that pool and silently ignores the others
(its README: it is designed for calls from the main thread), so the control
is released around each change. Meanwhile numpy elsewhere in the process runs
on one thread too; torch's own threads (OpenMP) are not touched.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from threadpoolctl import OpenBLASController, threadpool_limits

_LOCK = threading.Lock()
_users = 0
_limiter = None


def _change(change):
    """Run ``change()`` as the thread that controls OpenBLAS' process-wide pool, then leave it uncontrolled."""
    OpenBLASController.clear_controlling_thread(force=True)
    try:
        return change()
    finally:
        OpenBLASController.clear_controlling_thread(force=True)


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the block (or, as a decorator, the function) with numpy's BLAS and LAPACK on one thread."""
    global _users, _limiter
    with _LOCK:
        if _users == 0:
            _limiter = _change(lambda: threadpool_limits(1, user_api="blas"))
        _users += 1
    try:
        yield
    finally:
        with _LOCK:
            _users -= 1
            if _users == 0:
                _change(_limiter.restore_original_limits)
                _limiter = None
