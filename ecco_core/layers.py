"""One name for every layer, used by every result, table, CSV, axis and page.

A model of ``n`` blocks has ``n + 1`` places in its residual stream: the
embeddings, then the output of block 0 .. n-1. Each block also has its
attention and its FFN. In a :class:`~ecco_core.capture.Capture`,
``hidden_states[0]`` is the embeddings and ``hidden_states[i + 1]`` the output
of block ``i``; ``ffn[i]`` is block ``i``'s FFN.

>>> residual_label(0), residual_label(3), site_label("ffn", 2)
('embeddings', 'block 2', 'block 2 FFN')
"""

from __future__ import annotations

EMBEDDINGS = "embeddings"

#: What a site of a block is called after its block: the residual stream (the
#: block's output) has no suffix.
SITE_SUFFIXES = {"residual": "", "attention": " attention", "ffn": " FFN"}


def block_label(block: int) -> str:
    """``"block 3"``: the output of block 3 in the residual stream."""
    return f"block {int(block)}"


def residual_label(index: int) -> str:
    """Label of ``hidden_states[index]``: ``"embeddings"`` for 0, else ``"block {index - 1}"``."""
    return EMBEDDINGS if int(index) == 0 else block_label(int(index) - 1)


def residual_labels(n_layers: int) -> list[str]:
    """Labels of all ``n_layers + 1`` rows of ``hidden_states``."""
    return [residual_label(index) for index in range(n_layers + 1)]


def site_label(site: str, block: int) -> str:
    """``"block 2 FFN"``, ``"block 2 attention"``, ``"block 2"`` (its output)."""
    if site not in SITE_SUFFIXES:
        raise ValueError(f"site must be one of {sorted(SITE_SUFFIXES)}; got {site!r}")
    return block_label(block) + SITE_SUFFIXES[site]
