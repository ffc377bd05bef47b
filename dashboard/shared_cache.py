"""Captures and long results held once for every session of the server, bounded by bytes rather than by count.

A capture's size grows with its tokens (the causal default at the deployment's
limits is ~150 MB, a short prompt ~5 MB), so a count bound such as
``st.cache_data(max_entries=64)`` could hold gigabytes. Entries are shared,
not copied per session: captures and results are read-only by contract, like the model.

Computing is gated too (:class:`RunGate`): at most ``settings.MAX_CONCURRENT_RUNS``
captures and analyses run at once across all sessions, so four visitors at the
limits queue rather than add their peaks; a waiting page says that it waits.
After each run the freed memory goes back to the operating system
(:func:`release_memory`), or the server would stay at its highest peak.
"""

from __future__ import annotations

import ctypes
import gc
import pickle
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Callable, Hashable, Iterator


import ecco_core as ec

from . import settings as limits


def capture_nbytes(cap: ec.Capture) -> int:
    """Bytes held by a capture's arrays and token strings (the arrays still to fetch from NDIF counted as here)."""
    text = sum(len(token) for token in cap.tokens) + sum(len(token) for row in cap.top_tokens for token in row)
    return cap.nbytes + text


def pickled_nbytes(value) -> int:
    """Bytes of ``value`` pickled: the size of a small result (a table, a matrix, factors)."""
    return len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def _glibc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc (macOS, musl): nothing to trim
        return None


_LIBC = _glibc()
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
LARGE_BLOCK_BYTES = 4 * 2**20


def allocate_large_blocks_apart() -> None:
    """Give every allocation of ``LARGE_BLOCK_BYTES`` or more its own mapping, returned to the system when freed.

    glibc raises its mapping threshold each time such a block is freed (up to
    32 MiB), after which blocks of that size come from the heap, where the
    chunked passes' many same-sized tensors fragment it: one lens pass over a
    576-token capture then peaked at +973 MiB of resident memory against
    +270 MiB with the threshold held (measured with ``rankings_and_diagnostics``).
    """
    if _LIBC is not None and hasattr(_LIBC, "mallopt"):
        _LIBC.mallopt(_M_MMAP_THRESHOLD, LARGE_BLOCK_BYTES)


allocate_large_blocks_apart()


def release_memory() -> None:
    """Collect garbage and hand freed heap memory back to the operating system (glibc's ``malloc_trim``).

    glibc keeps what a thread freed in that thread's arena for reuse, so a
    server whose sessions (threads) each ran one large analysis would otherwise
    keep every one of those peaks in its resident size.
    """
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def freeze_long_lived() -> None:
    """Collect garbage, then keep every object alive now out of the cyclic collector's walks (``gc.freeze``).

    For the server once it has started: its modules and the preloaded model
    (~0.5M objects) live as long as it does, and :func:`release_memory`'s
    collection after every run walked them all, ~0.3 s of CPU each time with
    the GIL held against every session. Frozen objects are still freed when
    their last reference goes; the collector walks only what was made since.
    """
    gc.collect()
    gc.freeze()


#: on_wait(seconds waited, runs in progress): called about every ``RunGate.POLL_S`` while a run waits for its turn.
OnWait = Callable[[float, int], None]


class RunGate:
    """At most ``limit`` runs at once across threads; the others wait their turn, in no particular order.

    A run that takes its turn ``alone`` runs with no other: one whose peak
    would take the server past its memory beside another large run
    (attribution patching of a long prompt). While it waits, no other run
    starts, so it is not kept waiting by a stream of smaller ones.
    A thread that already holds a turn passes straight through (a run that
    needs a capture, such as a similarity over UD sentences, never waits for
    itself). Each run that ends releases the memory it freed
    (:func:`release_memory`).
    """

    POLL_S = 0.5

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError(f"limit must be at least 1; got {limit!r}")
        self.limit = limit
        self._local = threading.local()
        self._changed = threading.Condition()
        self._running = 0
        self._alone = False  # the runs in progress are one run alone
        self._waiting_alone = 0

    @property
    def running(self) -> int:
        """Runs in progress now."""
        with self._changed:
            return self._running

    def _admitted(self, alone: bool) -> bool:
        """Start a run if the gate lets it in now (the caller holds ``_changed``)."""
        if alone:
            if self._running:
                return False
        elif self._alone or self._waiting_alone or self._running >= self.limit:
            return False
        self._running += 1
        self._alone = alone
        return True

    @contextmanager
    def turn(self, on_wait: OnWait | None = None, *, alone: bool = False) -> Iterator[None]:
        """Hold one of the ``limit`` turns for the block (all of them when ``alone``); ``on_wait`` hears about the
        wait, if there is one.

        ``on_wait`` may raise (Streamlit's Stop or a rerun): the wait ends there and no turn is taken.
        """
        if getattr(self._local, "depth", 0):
            self._local.depth += 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        with self._changed:
            admitted = self._admitted(alone)
            if alone and not admitted:
                self._waiting_alone += 1
        if not admitted:
            started = time.monotonic()
            try:
                while not admitted:
                    if on_wait is not None:
                        on_wait(time.monotonic() - started, self.running)
                    with self._changed:
                        admitted = self._changed.wait_for(lambda: self._admitted(alone), timeout=self.POLL_S)
            finally:
                if alone:
                    with self._changed:
                        self._waiting_alone -= 1
                        self._changed.notify_all()
        self._local.depth = 1
        try:
            yield
        finally:
            self._local.depth = 0
            with self._changed:
                self._running -= 1
                self._alone = False
                self._changed.notify_all()
            release_memory()


#: The one gate for every capture and analysis of this server.
RUNS = RunGate(limits.MAX_CONCURRENT_RUNS)


def streamlit_notice() -> Callable[[], tuple[OnWait, Callable[[], None]]] | None:
    """A waiting message for the page of the session running now, or None outside a Streamlit script run.

    Returns ``(on_wait, done)``: ``on_wait`` shows (and updates) the message,
    ``done`` removes it once the run starts.
    """
    import streamlit as st
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    if get_script_run_ctx(suppress_warning=True) is None:
        return None
    slot = []

    def on_wait(waited: float, running: int) -> None:
        if not slot:
            slot.append(st.empty())
        slot[0].info(
            f"Waiting for its turn: {running} other run{'s' if running != 1 else ''} in progress on this server, "
            f"which computes at most {RUNS.limit} at once to stay within its memory (ECCO_MAX_CONCURRENT_RUNS). "
            f"Yours starts when one ends ({waited:.0f} s so far).",
            icon="⏳",
        )

    def done() -> None:
        if slot:
            slot[0].empty()

    return on_wait, done


class SharedCache:
    """Least-recently-used values within ``max_bytes``, each kept at most ``ttl_seconds``.

    ``get(key, compute)`` returns the cached value or computes it once: a
    session asking for a key that another is computing waits for that result.
    A value larger than the whole budget is returned and not kept. ``nbytes``
    measures a value (by default a capture's arrays). Each computation takes
    a turn of ``gate`` (by default the server's :data:`RUNS`; None for no
    gate), and a Streamlit page that has to wait for one says so.
    """

    def __init__(self, max_bytes: int, ttl_seconds: float, nbytes: Callable[[Any], int] = capture_nbytes,
                 gate: RunGate | None = RUNS):
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds
        self.size_of = nbytes
        self.gate = gate
        self._entries: OrderedDict[Hashable, tuple[Any, int, float]] = OrderedDict()
        self._computing: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(size for _, size, _ in self._entries.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def peek(self, key: Hashable):
        """The value cached under ``key``, or None; never computes."""
        with self._lock:
            return self._lookup(key)

    def _lookup(self, key: Hashable):
        entry = self._entries.get(key)
        if entry is None:
            return None
        if time.monotonic() - entry[2] > self.ttl_seconds:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def get(self, key: Hashable, compute: Callable[[], Any], *, alone: bool = False):
        """The value cached under ``key``, else ``compute()`` (in a turn of the gate, ``alone`` if asked), kept."""
        with self._lock:
            found = self._lookup(key)
            if found is not None:
                return found
            key_lock = self._computing.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                found = self._lookup(key)
            if found is not None:
                return found
            try:
                value = self._compute(compute, alone)
            finally:
                with self._lock:
                    self._computing.pop(key, None)
            size = self.size_of(value)
            with self._lock:
                if size <= self.max_bytes:
                    self._entries[key] = (value, size, time.monotonic())
                    total = sum(entry[1] for entry in self._entries.values())
                    while total > self.max_bytes:
                        _, (_, dropped, _) = self._entries.popitem(last=False)
                        total -= dropped
            return value

    def _compute(self, compute: Callable[[], Any], alone: bool):
        if self.gate is None:
            return compute()
        notice = streamlit_notice()
        on_wait, done = notice if notice is not None else (None, lambda: None)
        with self.gate.turn(on_wait, alone=alone):
            done()
            return compute()
