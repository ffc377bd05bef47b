"""Method registries: a readable dict from a name to the function that computes it, with one line for people.

Saliency and factors keep one ``METHODS`` dict of :class:`Method` entries,
similarity one of :class:`~ecco_core.similarity.SimilarityMethod` (the same
two fields, and what a matrix needs prepared once); adding a method is one
function and one entry; the analysis looks the name up and calls
``.function``, with no if-chain. Pages show ``.description``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple


class Method(NamedTuple):
    """One entry of a ``METHODS`` registry."""

    function: Callable
    description: str

