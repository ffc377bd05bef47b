"""The text shaded token by token, and signed values per token as bars."""

from __future__ import annotations

import numpy as np

from .._checks import entries
from ..text import axis_labels, escape_text, escape_token
from .common import margins


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
    entries("values", weights, len(tokens), "one per token")
    peak = weights.max() if len(weights) and weights.max() > 0 else 1.0
    spans = []
    for position, (token, weight) in enumerate(zip(tokens, weights)):
        alpha = max(0.0, float(weight) / peak)
        style = [f"background: rgba({color}, {alpha:.3f})", "border-radius: 3px", "padding: 1px 0"]
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



def token_bars(values, tokens, *, title: str = "", y_title: str = "activation"):
    """Signed values per token as bars (positive blue, negative red), e.g. one neuron's activation.

    Parameters
    ----------
    values : array-like of shape (n_tokens,)
    tokens : sequence of str, length n_tokens

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    values = np.asarray(values, dtype=float)
    entries("values", values, len(tokens), "one per token")
    figure = go.Figure(
        go.Bar(
            x=axis_labels(tokens), y=values, marker_color=np.where(values >= 0, "#2962ff", "#e53935"),
            hovertext=[escape_token(token) for token in tokens], hoverinfo="text+y",
        )
    )
    figure.update_layout(title=escape_text(title), yaxis_title=escape_text(y_title), height=320,
                         margin=margins(title))
    figure.update_xaxes(type="category", tickangle=-45)
    return figure
