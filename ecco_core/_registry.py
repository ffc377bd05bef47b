"""Method registries: a readable dict from a name to the function that computes it, with one line for people.

Each analysis keeps one ``METHODS`` dict of its own entries, with the two
fields of :class:`Method` first and what the analysis and its estimate need
after them (:class:`~ecco_core.factors.FactorMethod`: the work of one fit;
:class:`~ecco_core.saliency.SaliencyMethod`: whether it has a sign;
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

