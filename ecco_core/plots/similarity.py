"""Similarity of representations: a layers x layers matrix."""

from __future__ import annotations

import numpy as np

from ..text import escape_token
from .common import heatmap


def similarity_heatmap(result, *, decimals: int = 2):
    """Figure 6: a layers x layers similarity matrix, its value written in each cell.

    Parameters
    ----------
    result : ecco_core.similarity.SimilarityMatrix
        ``values`` of shape (n_rows, n_columns) in [0, 1], ``row_labels``,
        ``column_labels``, ``row_title``, ``column_title`` (axis titles),
        ``label`` (the method's name), ``n_samples``.
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
        x_title=result.column_title, y_title=result.row_title,
    )
    figure.update_traces(zmin=0.0, zmax=1.0, textfont={"size": 9}, selector={"type": "heatmap"})
    figure.update_layout(height=max(360, 22 * len(rows) + 160))
    return figure
