"""Captures and long results held once for every session of the server, bounded by bytes rather than by count.

A capture's size grows with its tokens (the causal default at the deployment's
limits is ~150 MB, a short prompt ~5 MB), so a count bound such as
``st.cache_data(max_entries=64)`` could hold gigabytes. Entries are shared,
not copied per session: captures and results are read-only by contract, like the model.
"""

from __future__ import annotations

import pickle
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Hashable

import numpy as np

import ecco_core as ec


def capture_nbytes(cap: ec.Capture) -> int:
    """Bytes held by a capture's arrays and token strings."""
    arrays = (cap.token_ids, cap.hidden_states, cap.ffn, cap.top_ids, cap.top_probs, cap.special)
    text = sum(len(token) for token in cap.tokens) + sum(len(token) for row in cap.top_tokens for token in row)
    return sum(np.asarray(array).nbytes for array in arrays) + text


def pickled_nbytes(value) -> int:
    """Bytes of ``value`` pickled: the size of a small result (a table, a matrix, factors)."""
    return len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


class SharedCache:
    """Least-recently-used values within ``max_bytes``, each kept at most ``ttl_seconds``.

    ``get(key, compute)`` returns the cached value or computes it once: a
    session asking for a key that another is computing waits for that result.
    A value larger than the whole budget is returned and not kept. ``nbytes``
    measures a value (by default a capture's arrays).
    """

    def __init__(self, max_bytes: int, ttl_seconds: float, nbytes: Callable[[Any], int] = capture_nbytes):
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds
        self.size_of = nbytes
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

    def get(self, key: Hashable, compute: Callable[[], Any]):
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
                value = compute()
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
