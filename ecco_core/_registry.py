"""Method registries: a readable dict from a name to the function that computes it, with one line for people.

Factors keep one ``METHODS`` dict of :class:`Method` entries; saliency,
similarity and attention their own entries with the same two fields first and
what their analysis needs after them
(:class:`~ecco_core.saliency.SaliencyMethod`: whether it has a sign;
:class:`~ecco_core.similarity.SimilarityMethod`: what a matrix needs prepared
once; :class:`~ecco_core.attention.AttentionMethod`: what the pass feeds it
and how a plot names it). Adding a method is one
function and one entry; the analysis looks the name up and calls
``.function``, with no if-chain. Pages show ``.description``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple


class Method(NamedTuple):
    """One entry of a ``METHODS`` registry."""

    function: Callable
    description: str

