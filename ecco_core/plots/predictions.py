"""Next-token predictions at every position (the home page's heatmap)."""

from __future__ import annotations

from .._checks import invalid, whole, words
from ..text import axis_labels, cell_token, escape_quoted
from .common import heatmap


#: The next-token heatmap's plot area in a 1400 px window (wide layout, sidebar open, measured in Chromium)
#: and the width of one of its 12 px characters: cells write their candidate only where it is legible.
NEXT_TOKEN_PLOT_PX, NEXT_TOKEN_CHAR_PX, NEXT_TOKEN_MIN_CHARS = 690, 8, 4


def next_token_heatmap(cap, k: int = 5, *, plot_px: int = NEXT_TOKEN_PLOT_PX, pinned=None):
    """What the model expected next at every position: its top ``k`` candidates, coloured by probability.

    Columns are the positions (after this token), rows the ranks. A cell
    writes its candidate (cut with ``…``) when at least
    :data:`NEXT_TOKEN_MIN_CHARS` characters of 12 px fit in a plot ``plot_px``
    wide; narrower cells leave it to the hover, which always holds the whole
    candidate and its probability (escaped). Cells are clickable in Streamlit
    (``customdata = [rank, position]``).

    Parameters
    ----------
    cap : ecco_core.Capture
        With at least one kept prediction (``top_ids`` of shape (n_tokens, >= 1)).
    k : int, default 5
        Candidates shown (fewer when the capture kept fewer).
    plot_px : int
        Width of the plot area in pixels, for the choice to write in the cells.
    pinned : (int, int), optional
        A cell to outline, as ``(rank - 1, position)`` (the clicked one).

    Returns
    -------
    plotly.graph_objects.Figure
    """
    kept = cap.top_ids.shape[1]
    if not kept:
        raise invalid("cap", words("one that kept none"), "a capture that kept its top predictions (k >= 1)")
    k = min(whole("k", k, low=1), kept)
    cell_chars = plot_px // (NEXT_TOKEN_CHAR_PX * cap.n_tokens)
    text = None
    if cell_chars >= NEXT_TOKEN_MIN_CHARS:
        text = [[cell_token(row[rank], cell_chars) for row in cap.top_tokens] for rank in range(k)]
    hover = [
        [
            f"after {escape_quoted(token)}: {escape_quoted(row[rank])}, p = {probs[rank]:.3f}"
            for token, row, probs in zip(cap.tokens, cap.top_tokens, cap.top_probs)
        ]
        for rank in range(k)
    ]
    figure = heatmap(
        cap.top_probs[:, :k].T, axis_labels(cap.tokens), [f"#{rank + 1}" for rank in range(k)],
        text=text, hover=hover, colorscale="Blues", colorbar_title="probability", x_title="after this token",
    )
    figure.update_traces(textfont={"size": 12}, selector={"type": "heatmap"})  # never shrunk below legibility
    if pinned is not None:
        row, position = (whole("pinned", value, low=0) for value in pinned)
        if row >= k or position >= cap.n_tokens:
            raise invalid("pinned", pinned, f"(row, position) within {k} rows and {cap.n_tokens} positions")
        figure.add_shape(type="rect", x0=position - 0.5, x1=position + 0.5, y0=row - 0.5, y1=row + 0.5,
                         line={"color": "#ff4b4b", "width": 3})
    return figure
