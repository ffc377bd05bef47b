"""One name for every layer, used by every result, table, CSV, axis and page.

A model of ``n`` blocks has ``n + 1`` places in its residual stream: the
embeddings, then the output of block 0 .. n-1. Each block also has its
attention and its FFN. In a :class:`~ecco_core.capture.Capture`,
``hidden_states[0]`` is the embeddings and ``hidden_states[i + 1]`` the output
of block ``i``; ``ffn[i]`` is block ``i``'s FFN.

>>> residual_label(0), residual_label(3), site_label("ffn", 2)
('embeddings', 'block 2', 'block 2 FFN')

The parts that write into the residual stream (direct logit attribution)
are named after their block too: ``head_label(9, 3)`` is ``"block 9 head 3"``,
``bias_label("attention", 9)`` the bias of block 9's attention output
projection, ``"block 9 attention bias"``.
"""

from __future__ import annotations

EMBEDDINGS = "embeddings"

#: The part of a logit that no block writes: the final norm's bias and the LM head's bias.
FINAL_BIAS = "final norm and head bias"

#: What a site of a block is called after its block: the residual stream (the
#: block's output) has no suffix.
SITE_SUFFIXES = {"residual": "", "attention": " attention", "ffn": " FFN"}


def block_label(block: int) -> str:
    """``"block 3"``: the output of block 3 in the residual stream."""
    return f"block {int(block)}"


def depth_labels(frame) -> list[str]:
    """Where in the stack each row of a frame with a ``block`` column sits: "embeddings" or "block i".

    ``block`` is the block index, missing for the embeddings (as in
    :func:`ecco_core.probe_table`). A block's output and its FFN share their
    block's label, so the two representations line up on one axis.
    """
    blocks = frame["block"]
    return [EMBEDDINGS if missing else block_label(block) for block, missing in zip(blocks, blocks.isna())]


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


def head_label(block: int, head: int) -> str:
    """``"block 9 head 3"``: attention head 3 of block 9 (query heads, numbered from 0)."""
    return f"{block_label(block)} head {int(head)}"


def bias_label(site: str, block: int) -> str:
    """``"block 9 attention bias"``: the bias of a site's output projection, added once, owned by no head."""
    return site_label(site, block) + " bias"


def after_attention_label(block: int) -> str:
    """``"block 9 after attention"``: the residual stream inside block 9, its attention added, its FFN not yet."""
    return f"{block_label(block)} after attention"


#: The two representations compared or probed layer by layer, and what each holds (the help text of a picker).
REPRESENTATIONS = {
    "hidden": "hidden states: the embeddings, then every block's output ('block i'), n_layers + 1 rows",
    "ffn": "FFN activations: the input of every block's FFN output projection ('block i FFN'), n_layers rows",
}
#: Axis title and legend name of each representation in a figure.
REPRESENTATION_TITLES = {"hidden": "hidden states", "ffn": "FFN activations"}


def representation_labels(representation: str, count: int) -> list[str]:
    """Labels of the first ``count`` layers of a representation: "embeddings", "block i" or "block i FFN"."""
    if representation not in REPRESENTATIONS:
        raise ValueError(f"representation must be one of {sorted(REPRESENTATIONS)}; got {representation!r}")
    if representation == "hidden":
        return [residual_label(index) for index in range(count)]
    return [site_label("ffn", block) for block in range(count)]


def representation_widths(lm, representation: str) -> list[int]:
    """The width of each layer of a representation of ``lm``: ``d_model`` for each of the ``n_layers + 1``
    hidden states, ``d_ff`` for each of the ``n_layers`` FFNs (``lm`` gives ``n_layers``, ``d_model``, ``d_ff``)."""
    if representation not in REPRESENTATIONS:
        raise ValueError(f"representation must be one of {sorted(REPRESENTATIONS)}; got {representation!r}")
    return [lm.d_model] * (lm.n_layers + 1) if representation == "hidden" else [lm.d_ff] * lm.n_layers
