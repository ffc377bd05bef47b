"""Similarity of representations: a layers x layers matrix."""

from __future__ import annotations

import numpy as np

from ..text import escape_token
from .common import heatmap


#: The similarity heatmap's plot area in a 1400 px window (wide layout, sidebar open, the chance panel beside it;
#: measured in Chromium: 466 px) and the width of one 9 px digit there (a value "0.97" is 16.2 px): cells write
#: their value only where it stands apart from the next one's.
SIMILARITY_PLOT_PX, SIMILARITY_CHAR_PX = 460, 4.1


def similarity_heatmap(result, *, decimals: int = 2, plot_px: int = SIMILARITY_PLOT_PX):
    """Figure 6: a layers x layers similarity matrix, its value written in each cell where there is room.

    Parameters
    ----------
    result : ecco_core.similarity.SimilarityMatrix
        ``values`` of shape (n_rows, n_columns) in [0, 1], ``row_labels``,
        ``column_labels``, ``row_title``, ``column_title`` (axis titles),
        ``label`` (the method's name), ``n_samples``.
    decimals : int
        Digits written in the cells.
    plot_px : int
        Width of the plot area in pixels: values are written only when ``decimals + 2`` characters (and a
        little space) fit in a cell; the hover always has the value to four decimals.

    Returns
    -------
    plotly.graph_objects.Figure
        Colour fixed to [0, 1] so figures of different methods compare.
    """
    values = np.asarray(result.values, dtype=float)
    rows, columns = list(result.row_labels), list(result.column_labels)
    fits = plot_px / max(1, len(columns)) >= SIMILARITY_CHAR_PX * (decimals + 2) + 3
    text = np.vectorize(lambda value: f"{value:.{decimals}f}")(values)
    hover = [
        [f"{escape_token(row)} vs {escape_token(column)}: {value:.4f}" for column, value in zip(columns, line)]
        for row, line in zip(rows, values)
    ]
    figure = heatmap(
        values, columns, rows, text=text, write_text=fits, hover=hover, colorscale="Viridis", colorbar_title=result.label,
        title=f"{result.label} similarity over {result.n_samples} token positions",
        x_title=result.column_title, y_title=result.row_title,
    )
    figure.update_traces(zmin=0.0, zmax=1.0, textfont={"size": 9}, selector={"type": "heatmap"})
    figure.update_layout(height=max(360, 22 * len(rows) + 160))
    return figure
