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


# ---- similarity
def similarity_heatmap(result, *, decimals: int = 2):
    """Figure 6: a layers x layers similarity matrix, its value written in each cell.

    Parameters
    ----------
    result : ecco_core.similarity.SimilarityMatrix
        ``values`` of shape (n_rows, n_columns) in [0, 1], ``row_labels``,
        ``column_labels``, ``label`` (the method's name), ``n_samples``.
    decimals : int
        Digits written in the cells.

    Returns
    -------
    plotly.graph_objects.Figure
        Colour fixed to [0, 1] so figures of different methods compare.
    """
    values = np.asarray(result.values, dtype=float)
    rows, columns = list(result.row_labels), list(result.column_labels)
    text = np.vectorize(lambda value: f"{value:.{decimals}f}")(values)
    hover = [
        [f"{escape_token(row)} vs {escape_token(column)}: {value:.4f}" for column, value in zip(columns, line)]
        for row, line in zip(rows, values)
    ]
    figure = heatmap(
        values, columns, rows, text=text, hover=hover, colorscale="Viridis", colorbar_title=result.label,
        title=f"{result.label} similarity over {result.n_samples} token positions",
        x_title=columns[0].rsplit(" ", 1)[0] if columns else "", y_title=rows[0].rsplit(" ", 1)[0] if rows else "",
    )
    figure.update_traces(zmin=0.0, zmax=1.0, textfont={"size": 9}, selector={"type": "heatmap"})
    figure.update_layout(height=max(360, 22 * len(rows) + 160))
    return figure
