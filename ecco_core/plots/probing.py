"""Probing: a metric by layer, one line per representation."""

from __future__ import annotations

from .._checks import choice
from ..layers import REPRESENTATION_TITLES, depth_labels
from ..text import escape_text, escape_token
from .common import margins


def probe_lines(frame, metric: str = "accuracy", *, title: str = ""):
    """A probing metric by layer, one line per representation, with ± one standard deviation bars.

    Parameters
    ----------
    frame : pandas.DataFrame
        :func:`ecco_core.probe_table`'s result (columns ``layer``,
        ``representation``, ``block``, ``<metric>``, ``<metric>_std``, fractions).
    metric : {"accuracy", "selectivity"}
    title : str

    Returns
    -------
    plotly.graph_objects.Figure
        Percent on the y axis; on a category x axis, the embeddings then
        each block (``"block i"``), in the frame's order: a block's output
        (hidden) and its FFN share their block's tick; the hover names the
        exact array (``"block 2 FFN"``).
    """
    import plotly.graph_objects as go

    metric = choice("metric", metric, ("accuracy", "selectivity"))
    figure = go.Figure()
    for representation, rows in frame.groupby("representation", sort=False):
        figure.add_trace(
            go.Scatter(
                x=depth_labels(rows), y=100 * rows[metric],
                error_y={"type": "data", "array": 100 * rows[metric + "_std"], "visible": True},
                mode="lines+markers", name=REPRESENTATION_TITLES.get(representation, representation),
                hovertext=[escape_token(label) for label in rows["layer"]],
                hovertemplate="%{hovertext}: %{y:.1f}%<extra></extra>",
            )
        )
    figure.update_layout(
        title=escape_text(title), xaxis_title="layer (the embeddings, then each block: its output and its FFN)",
        yaxis_title=f"{metric} (%)", legend_title="representation",
        margin=margins(title), height=380,
    )
    figure.update_xaxes(type="category", categoryorder="array", categoryarray=list(dict.fromkeys(depth_labels(frame))))
    return figure
