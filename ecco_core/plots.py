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


def axis_labels(tokens) -> list[str]:
    """Unique, readable axis labels for tokens: ``"3: Paris"`` (Plotly merges equal category labels)."""
    return [f"{position}: {token.strip() or repr(token)}" for position, token in enumerate(tokens)]


def heatmap(
    values,
    x_labels,
    y_labels,
    *,
    text=None,
    hover=None,
    colorscale: str = "Blues",
    color_values=None,
    colorbar_title: str = "",
    title: str = "",
    x_title: str = "",
    y_title: str = "",
    reverse_y: bool = True,
):
    """A heatmap whose cells can be clicked in Streamlit.

    A plain ``go.Heatmap`` returns no point to ``st.plotly_chart(on_select=...)``,
    so one near-invisible scatter marker is laid over each cell, carrying
    ``customdata = [row, column]``; read it back with
    ``dashboard.clicked_cell(event)``.

    Parameters
    ----------
    values : array-like of shape (n_rows, n_columns)
        Written in the cells (via ``text``) and used for colour unless
        ``color_values`` is given.
    x_labels : sequence of str, length n_columns
    y_labels : sequence of str, length n_rows
    text : array-like of str of shape (n_rows, n_columns), optional
        Text written in each cell.
    hover : array-like of str of shape (n_rows, n_columns), optional
        Hover text per cell (HTML-escaped by the caller: token text goes
        through :func:`escape_token`).
    color_values : array-like of shape (n_rows, n_columns), optional
        What the colour encodes (e.g. log rank), if not ``values``.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    values = np.asarray(values, dtype=float)
    n_rows, n_columns = values.shape
    color = values if color_values is None else np.asarray(color_values, dtype=float)
    x_labels, y_labels = list(x_labels), list(y_labels)
    figure = go.Figure(
        go.Heatmap(
            z=color, x=x_labels, y=y_labels, colorscale=colorscale,
            text=text, texttemplate="%{text}" if text is not None else None,
            hovertext=hover, hoverinfo="text" if hover is not None else "x+y+z",
            colorbar={"title": {"text": colorbar_title}}, xgap=1, ygap=1,
        )
    )
    rows, columns = np.mgrid[0:n_rows, 0:n_columns]
    figure.add_trace(
        go.Scatter(
            x=[x_labels[c] for c in columns.ravel()], y=[y_labels[r] for r in rows.ravel()],
            mode="markers", marker={"size": 18, "opacity": 0.01, "symbol": "square"},
            customdata=np.stack([rows.ravel(), columns.ravel()], axis=1),
            hoverinfo="none", showlegend=False,
        )
    )
    figure.update_layout(
        title=title, xaxis_title=x_title, yaxis_title=y_title,
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
        height=max(260, 28 * n_rows + 120),
    )
    figure.update_xaxes(type="category", tickangle=-45)
    figure.update_yaxes(type="category", autorange="reversed" if reverse_y else True)
    return figure


# ---- saliency
def saliency_heatmap(sal, *, title: str = ""):
    """Output x input heatmap of a :class:`ecco_core.Saliency`, in percent, clickable per cell.

    Rows are the explained tokens, columns every token of the sequence;
    cells a causal row cannot see stay blank. Read a click back with
    ``dashboard.clicked_cell(event)``: its row indexes ``sal.positions``.
    """
    percent = 100.0 * np.asarray(sal.scores, dtype=float)
    visible = sal.attributed_mask()
    shown = np.where(visible, percent, np.nan)
    text = np.where(visible, np.char.mod("%.0f", np.nan_to_num(percent)), "")
    hover = [
        [
            f"{escape_token(sal.tokens[column])} \u2192 {escape_token(explained)}: {percent[row, column]:.1f}%"
            for column in range(sal.n_tokens)
        ]
        for row, explained in enumerate(sal.explained_tokens)
    ]
    labels = axis_labels(sal.tokens)
    return heatmap(
        shown, labels, [labels[position] for position in sal.positions], text=text, hover=hover,
        colorbar_title="%", title=title, x_title="input token", y_title="explained token",
    )


def saliency_bars(tokens, scores, *, title: str = ""):
    """Each input token's share of one explained token (the Ecco paper's Figure 4 detail view).

    Parameters
    ----------
    tokens : sequence of str, length n_tokens
    scores : array-like of shape (n_tokens,)
        One row of ``Saliency.scores`` (sums to 1).
    """
    import plotly.graph_objects as go

    percent = 100.0 * np.asarray(scores, dtype=float)
    labels = axis_labels(tokens)
    figure = go.Figure(
        go.Bar(
            x=percent, y=labels, orientation="h", marker={"color": percent, "colorscale": "Blues"},
            text=[f"{value:.1f}%" for value in percent], textposition="outside",
            hovertext=[f"{escape_token(token)}: {value:.2f}%" for token, value in zip(tokens, percent)],
            hoverinfo="text",
        )
    )
    figure.update_layout(
        title=title, xaxis_title="share of the attribution (%)",
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10}, height=max(220, 24 * len(labels) + 80),
    )
    figure.update_yaxes(type="category", autorange="reversed")
    return figure
