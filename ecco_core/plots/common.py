"""What every figure shares: margins, the hover label, and the clickable heatmap."""

from __future__ import annotations

import html

import numpy as np

from ..text import escape_text

#: The hover label of the heatmaps: dark text on white, bordered like Streamlit's text.
HOVER_LABEL = {"bgcolor": "white", "bordercolor": "#31333f", "font": {"color": "#31333f", "size": 13}}


def margins(title: str = "", *, top: int | None = None) -> dict:
    """Plotly's ``margin``: 10 px on every side, 40 above when there is a title (``top`` sets it).

    Axis labels get their room from ``automargin`` on the axes, not from here.
    """
    return {"l": 10, "r": 10, "t": (40 if title else 10) if top is None else top, "b": 10}


def heatmap(
    values,
    x_labels,
    y_labels,
    *,
    text=None,
    write_text: bool = True,
    hover=None,
    colorscale: str = "Blues",
    color_values=None,
    colorbar_title: str = "",
    title: str = "",
    x_title: str = "",
    y_title: str = "",
    reverse_y: bool = True,
):
    """A heatmap whose cells can be clicked in Streamlit and show their tooltip on hover.

    A plain ``go.Heatmap`` returns no point to ``st.plotly_chart(on_select=...)``,
    so one near-invisible scatter marker is laid over each cell, carrying
    ``customdata = [row, column]``; read it back with
    ``dashboard.clicked_cell(event)``. That layer is what the pointer meets, so
    it carries the cells' hover text too (the heatmap's own hover is skipped),
    and ``hoverdistance=-1`` makes the nearest marker answer: on a grid the
    nearest centre is the cell under the pointer, so hover and click work
    anywhere in a cell, however large.

    Parameters
    ----------
    values : array-like of shape (n_rows, n_columns)
        Written in the cells (via ``text``) and used for colour unless
        ``color_values`` is given.
    x_labels : sequence of str, length n_columns
    y_labels : sequence of str, length n_rows
    text : array-like of str of shape (n_rows, n_columns), optional
        Text of each cell: the figure carries it, and writes it in the cell
        when ``write_text``.
    write_text : bool
        False keeps ``text`` in the figure but leaves the cells blank (where
        values would run into each other; the hover still has them).
    hover : array-like of str of shape (n_rows, n_columns), optional
        Hover text per cell (HTML-escaped by the caller: token text goes
        through :func:`ecco_core.text.escape_token`).
    colorbar_title, title, x_title, y_title : str
        Plain text (escaped here).
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
            text=text, texttemplate="%{text}" if text is not None and write_text else None,
            hoverinfo="skip", colorbar={"title": {"text": escape_text(colorbar_title)}}, xgap=1, ygap=1,
        )
    )
    rows, columns = np.mgrid[0:n_rows, 0:n_columns]
    if hover is None:
        hover = [[f"{x_labels[column]}, {y_labels[row]}: {color[row, column]:.3g}" for column in range(n_columns)]
                 for row in range(n_rows)]
    figure.add_trace(
        go.Scatter(
            x=[x_labels[c] for c in columns.ravel()], y=[y_labels[r] for r in rows.ravel()],
            mode="markers", marker={"size": 18, "opacity": 0.01, "symbol": "square", "color": "#31333f"},
            customdata=np.stack([rows.ravel(), columns.ravel()], axis=1),
            hovertext=np.asarray(hover, dtype=object).ravel(), hoverinfo="text", showlegend=False,
        )
    )
    figure.update_layout(
        title=escape_text(title), xaxis_title=escape_text(x_title), yaxis_title=escape_text(y_title), hoverdistance=-1,
        hoverlabel=HOVER_LABEL,
        margin=margins(title),
        height=max(260, 28 * n_rows + 120),
    )
    # Margins grow to fit every label (none clipped); 14 px keeps one-character punctuation legible, and a few
    # short labels stand upright (a lone "." or "," at -45 degrees is hard to find).
    upright = n_columns <= 8 and max((len(html.unescape(str(label))) for label in x_labels), default=0) <= 18
    figure.update_xaxes(type="category", tickangle=0 if upright else -45, automargin=True, tickfont={"size": 14})
    figure.update_yaxes(type="category", autorange="reversed" if reverse_y else True, automargin=True)
    return figure
