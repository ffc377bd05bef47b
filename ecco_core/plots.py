"""Pure figure and HTML builders: data in, ``go.Figure`` or an HTML string out.

No Streamlit and no computing here; every builder works the same in a
notebook (``fig.show()``, ``IPython.display.HTML(...)``). All token text that
reaches HTML goes through :func:`escape_token`.
"""

from __future__ import annotations

import html

import numpy as np


def escape_token(token: str) -> str:
    """HTML-escape one token's text, showing newlines and tabs as visible marks."""
    return html.escape(token, quote=True).replace("\n", "\u21b5").replace("\t", "\u21e5")


def token_html(
    tokens,
    values=None,
    *,
    selected: int | None = None,
    n_input: int | None = None,
    color: str = "41, 98, 255",
) -> str:
    """Tokens as inline HTML spans, each shaded by its value (darker = higher).

    Parameters
    ----------
    tokens : sequence of str, length n_tokens
    values : array-like of shape (n_tokens,), optional
        Non-negative weights; scaled by their maximum. ``None`` shades nothing.
    selected : int, optional
        Position to outline (the token being explained).
    n_input : int, optional
        Tokens from this position on are underlined as generated.
    color : str
        The shading's "r, g, b".

    Returns
    -------
    str
        A ``<div>`` whose every token is escaped.
    """
    weights = np.zeros(len(tokens)) if values is None else np.nan_to_num(np.asarray(values, dtype=float))
    if len(weights) != len(tokens):
        raise ValueError(f"values has {len(weights)} entries for {len(tokens)} tokens")
    peak = weights.max() if len(weights) and weights.max() > 0 else 1.0
    spans = []
    for position, (token, weight) in enumerate(zip(tokens, weights)):
        alpha = max(0.0, float(weight) / peak)
        style = [f"background: rgba({color}, {alpha:.3f})", "border-radius: 3px", "padding: 1px 1px"]
        if alpha > 0.55:
            style.append("color: white")
        if position == selected:
            style.append("outline: 2px solid #ff4b4b")
        if n_input is not None and position >= n_input:
            style.append("border-bottom: 2px solid #888")
        title = f"{weight:.3f}" if values is not None else str(position)
        spans.append(
            f'<span title="{title}" style="{"; ".join(style)}">{escape_token(token)}</span>'
        )
    return (
        '<div style="font-family: monospace; font-size: 15px; line-height: 2.0; white-space: pre-wrap">'
        + "".join(spans)
        + "</div>"
    )
