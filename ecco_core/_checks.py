"""One way to check arguments: every bad value is refused with the same message.

The message names the argument, what is allowed and what was given::

    n_components must be a whole number from 1 to 29; got 30

A value of the wrong type raises ``TypeError``, a value of the right type
outside what is allowed raises ``ValueError``; both carry the same template,
so a caller (or the dashboard, which shows ``ValueError`` as a message) reads
every refusal alike.

>>> choice("method", "pca", ("nmf", "pca"))
'pca'
>>> whole("k", 0, low=1)
Traceback (most recent call last):
ValueError: k must be a whole number >= 1; got 0
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def message(name: str, given, allowed: str) -> str:
    """The one template: ``"{name} must be {allowed}; got {given!r}"``.

    Pass :class:`words` as ``given`` to describe the value rather than quote it
    (``got 3 entries``, ``got shape (2, 3)``).
    """
    return f"{name} must be {allowed}; got {given!r}"


class words(str):
    """A given value described in words: printed as is after "got", not quoted."""

    def __repr__(self) -> str:
        return str(self)


def invalid(name: str, given, allowed: str, error: type[Exception] = ValueError) -> Exception:
    """The exception to raise for a bad argument: ``raise invalid("k", k, "a whole number >= 1")``."""
    return error(message(name, given, allowed))


def listing(allowed: Iterable) -> str:
    """``"one of 'a', 'b'"``: the allowed values of a choice, in their order."""
    return "one of " + ", ".join(repr(value) for value in allowed)


def choice(name: str, value, allowed: Iterable):
    """``value`` when it is one of ``allowed`` (the keys of a dict, or a sequence), else ValueError."""
    allowed = list(allowed)
    if isinstance(value, (str, int, float, bool, type(None))) and value in allowed:
        return value
    raise invalid(name, value, listing(allowed))


def is_whole(value) -> bool:
    """True for an int or a NumPy integer, never for a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def whole(name: str, value, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int when it is a whole number within ``low .. high`` (inclusive).

    A non-integer (a float, a bool, a string) raises TypeError, one out of
    range ValueError; both say what is allowed.
    """
    if low is not None and high is not None:
        allowed = f"a whole number from {low} to {high}"
    elif low is not None:
        allowed = f"a whole number >= {low}"
    elif high is not None:
        allowed = f"a whole number <= {high}"
    else:
        allowed = "a whole number"
    if not is_whole(value):
        raise invalid(name, value, allowed, TypeError)
    if (low is not None and value < low) or (high is not None and value > high):
        raise invalid(name, value, allowed)
    return int(value)


def positive(name: str, value) -> float:
    """``value`` as a float when it is a finite number > 0."""
    allowed = "a finite number > 0"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise invalid(name, value, allowed, TypeError)
    if not 0 < float(value) < math.inf:
        raise invalid(name, value, allowed)
    return float(value)


def entries(name: str, sequence, size: int, why: str) -> list:
    """``sequence`` as a list when it holds exactly ``size`` entries (``why``: what they match), else ValueError.

    >>> entries("tokens", ["a", "b"], 3, "one per row of weights")
    Traceback (most recent call last):
    ValueError: tokens must be 3 entries, one per row of weights; got 2 entries
    """
    items = list(sequence)
    if len(items) != size:
        raise invalid(name, words(f"{len(items)} entries"), f"{size} entries, {why}")
    return items


def shaped(name: str, array: np.ndarray, axes: str) -> np.ndarray:
    """Refuse an array whose shape is not ``axes``: ``raise shaped(...)`` after the caller's own shape test."""
    return invalid(name, words(f"shape {tuple(array.shape)}"), f"an array of shape {axes}")


def row_of(positions: np.ndarray, position) -> int:
    """The index into ``positions`` (a result's explained positions) of sequence ``position``; else a ValueError."""
    matches = np.flatnonzero(positions == position)
    if not len(matches):
        raise invalid("position", position, f"an explained position, one of {positions.tolist()}")
    return int(matches[0])


def indices(name: str, selection, size: int, unit: str) -> np.ndarray:
    """Resolve an int, a slice, a range or a sequence of ints against ``range(size)``; None selects all.

    Returns
    -------
    ndarray of int, in the order given
        At least one index, each in 0 .. size - 1, none repeated.
    """
    if selection is None:
        return np.arange(size)
    allowed = (
        f"an int, a range, a slice or a sequence of distinct {unit} indices from 0 to {size - 1}, at least one"
    )
    if isinstance(selection, slice):
        resolved = np.arange(size)[selection]
    elif is_whole(selection):
        resolved = np.array([selection])
    elif isinstance(selection, (str, bytes)) or not hasattr(selection, "__iter__"):
        raise invalid(name, selection, allowed, TypeError)
    else:
        items = list(selection)
        if not all(is_whole(item) for item in items):
            raise invalid(name, selection, allowed, TypeError)
        resolved = np.array(items, dtype=int)
    if resolved.size == 0 or ((resolved < 0) | (resolved >= size)).any() or np.unique(resolved).size != resolved.size:
        raise invalid(name, selection, allowed)
    return resolved
