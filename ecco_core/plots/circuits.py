"""Figures of :mod:`ecco_core.circuits`: which heads and FFNs write the answer, and along which routes.

Three builders, reading a :class:`ecco_core.circuits.Circuits` by its fields:

- :func:`dla_heatmap`, blocks up the side, heads across and the FFN column
  beside them, coloured by direct logit attribution (diverging: blue raises
  the answer, red lowers it), each cell's tooltip naming the tokens the part
  pushes up and down and the tokens the head reads from;
- :func:`routes_html`, the information-flow graph (Ferrando & Voita 2024)
  drawn in the browser by an inline script from ``routes_view.js`` (package
  data, nothing fetched; the one bootstrap of :mod:`ecco_core.plots.views`):
  layers upward, tokens across, a threshold slider, tooltips, and a click on
  a node highlighting the routes through it;
- :func:`verify_scatter`, each component's DLA against its exact ablation
  effect, after :func:`ecco_core.circuits.verify`.
"""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd

from .._checks import invalid
from ..layers import EMBEDDINGS, after_attention_label, block_label, head_label, site_label
from ..text import display_token, escape_quoted, escape_text, quoted_token
from .attention import head_colors
from .common import HOVER_LABEL, heatmap
from .patching import SITE_COLORS
from .views import json_block, runner, view_style

#: Blue for what raises the answer (over the foil), red for what lowers it; white at 0.
DLA_COLORSCALE = "RdBu"
#: Edges below this importance are not sent to the routes graph (its slider starts here).
ROUTES_FLOOR = 0.01


def _metric_words(result) -> str:
    return (f"logit difference {quoted_token(result.answer)} - {quoted_token(result.foil)}"
            if result.foil is not None else f"logit of {quoted_token(result.answer)}")


def _signed(value: float) -> str:
    return f"{value:+.3f}".replace("-", "\u2212")


def _token_list(tokens, logits) -> str:
    return ", ".join(f"{escape_quoted(token)} {_signed(float(logit))}"
                     for token, logit in zip(tokens, logits))


def dla_heatmap(result, top_tokens=None, *, selected: tuple[int, int] | None = None, n_sources: int = 3):
    """Direct logit attribution of every head (columns ``0`` ... ``n_heads - 1``) and FFN (the last) of every block.

    Blocks run up the side (block 0 at the bottom, as the routes graph
    stacks them); the colour is each part's DLA in logits, on a diverging
    scale centred on 0. A cell's tooltip gives the value and its share of the
    model's value, the tokens the part pushes up and down most (with
    ``top_tokens``) and, for a head, the source tokens it reads most from
    (``result.head_sources``, where the result has them). Cells are clickable in Streamlit:
    ``customdata = [block, column]``, column ``n_heads`` being the FFN.

    Parameters
    ----------
    result : ecco_core.circuits.Circuits
    top_tokens : pandas.DataFrame, optional
        :func:`ecco_core.circuits.top_tokens` of ``result``.
    selected : (block, head), optional
        A cell to outline (the head whose attention is open).
    n_sources : int
        Source tokens named in a head's tooltip, by ``|value|``.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    n_layers, n_heads = result.heads.shape
    values = np.column_stack([result.heads, result.ffn])  # (n_layers, n_heads + 1)
    columns = [str(head) for head in range(n_heads)] + ["FFN"]
    rows = [block_label(block) for block in range(n_layers)]
    by_part = {} if top_tokens is None else {row.part: row for row in top_tokens.itertuples(index=False)}
    hover = np.empty(values.shape, dtype=object)
    for block in range(n_layers):
        for column in range(n_heads + 1):
            part = head_label(block, column) if column < n_heads else site_label("ffn", block)
            value = values[block, column]
            share = f" ({value / result.value:.0%} of {result.value:.2f})" if result.value else ""
            lines = [f"<b>{part}</b>: {_signed(value)} logits{share}"]
            row = by_part.get(part)
            if row is not None:
                lines.append(f"promotes {_token_list(row.promoted[:3], row.promoted_logits[:3])}")
                lines.append(f"suppresses {_token_list(row.suppressed[:3], row.suppressed_logits[:3])}")
            if column < n_heads and result.head_sources is not None:
                sources = result.head_sources[block, column]
                strongest = np.argsort(-np.abs(sources), kind="stable")[:n_sources]
                lines.append("reads from " + ", ".join(
                    f"{position} {escape_quoted(result.tokens[position])} {_signed(sources[position])}"
                    for position in strongest))
            opens = "click to open its attention" if result.head_sources is not None else "click to open it"
            lines.append(opens if column < n_heads else "an FFN has no attention")
            hover[block, column] = "<br>".join(lines)
    peak = float(np.abs(values).max()) or 1.0
    figure = heatmap(values, columns, rows, hover=hover, colorscale=DLA_COLORSCALE, colorbar_title="logits",
                     x_title="", y_title="", reverse_y=False)
    figure.update_traces(zmin=-peak, zmax=peak, zmid=0, selector={"type": "heatmap"})
    # A gap between the heads and the FFN column: they are different kinds of part.
    figure.add_vline(x=n_heads - 0.5, line={"color": "white", "width": 6})
    if selected is not None and 0 <= selected[0] < n_layers and 0 <= selected[1] <= n_heads:
        block, column = selected
        figure.add_shape(type="rect", x0=column - 0.5, x1=column + 0.5, y0=block - 0.5, y1=block + 0.5,
                         line={"color": "#31333f", "width": 3})
    figure.update_layout(
        title=escape_text(f"Direct logit attribution to the {_metric_words(result)} ({result.value:.2f})"),
        height=max(360, 19 * n_layers + 110), margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    figure.update_xaxes(side="top", tickangle=0, tickfont={"size": 12})
    figure.update_yaxes(tickfont={"size": 11})
    return figure


def _routes_payload(result, floor: float) -> dict:
    """The graph's numbers for the script: nodes as (row, position), row 0 the embeddings, ``2l+1`` block l after
    attention, ``2l+2`` block l's output; the edges of :meth:`Circuits.routes_frame` at ``floor``."""
    frame = result.routes_frame(floor)
    n_layers = result.n_layers

    def row(label: str) -> int:
        if label == EMBEDDINGS:
            return 0
        block = int(label.split()[1])
        return 2 * block + 1 if label == after_attention_label(block) else 2 * block + 2

    edges, labels = [], []
    for edge in frame.itertuples(index=False):
        head = -1 if pd.isna(edge.head) else int(edge.head)
        if edge.part == "head":
            name = head_label(edge.block, head)
        elif edge.part == "FFN":
            name = site_label("ffn", edge.block)
        else:
            name = f"{block_label(edge.block)} {edge.part}"
        edges.append([["head", "attention residual", "FFN", "FFN residual"].index(edge.part), head,
                      row(edge.source), int(edge.source_position), row(edge.target), int(edge.target_position),
                      float(edge.importance)])
        labels.append(name)
    rows = [EMBEDDINGS] + [label for block in range(n_layers)
                           for label in (after_attention_label(block), block_label(block))]
    return {
        "tokens": [display_token(token) for token in result.tokens],
        "rows": rows,
        "edges": edges,
        "labels": labels,
        "root": [2 * n_layers, result.read_position],
        "colors": head_colors(result.n_heads),
        "ffn": SITE_COLORS["ffn"],
    }


def routes_html(result, *, threshold: float = 0.04, floor: float = ROUTES_FLOOR, title: str = "") -> str:
    """The information-flow routes (Ferrando & Voita 2024) as one self-contained HTML block.

    Layers go upward (the embeddings at the bottom, then each block's stream
    after its attention and its output), tokens across; each kept edge is a
    line as wide as its importance: a head's move from a source token (in the
    head's colour), the residual stream kept (grey), an FFN's part (green,
    curved beside the stream). A slider sets the threshold, and the graph is
    pruned again in the browser from the prediction back to the input tokens
    (:meth:`Circuits.routes_frame`'s rule); hovering an edge or a node shows
    its numbers; clicking a node highlights every kept route through it
    (click it again, or the background, to clear). The SVG is built in the
    browser from a JSON block (Streamlit's sanitiser would strip an SVG in
    the string); token text only ever reaches the page as text.

    Parameters
    ----------
    result : ecco_core.circuits.Circuits
        Computed with ``routes=True``.
    threshold : float
        The slider's starting value.
    floor : float
        Edges below it are not sent: the slider's lowest value.
    title : str
        A line above the graph (escaped).

    Returns
    -------
    str
        A ``<div class="ecco-routes">`` with its style, the slider, a JSON block and a ``<script>``
        (:mod:`ecco_core.plots.views`: ``routes_view.css``, ``routes_view.js`` and one call of
        ``eccoRoutesView`` on the root).
    """
    if result.route_heads is None:
        raise invalid("result", "a result without routes", "one computed with circuits(..., routes=True)")
    if not 0 < floor <= threshold <= 1:
        raise invalid("threshold", threshold, f"a number in [floor, 1] with 0 < floor ({floor}) <= threshold")
    payload = _routes_payload(result, floor)
    view_id = f"ecco-routes-{uuid.uuid4().hex[:10]}"
    return (
        f'<div id="{view_id}" class="ecco-routes"><style>{view_style("routes")}</style>'
        + (f'<div class="ecco-routes-title">{escape_text(title)}</div>' if title else "")
        + '<div class="ecco-routes-controls"><label>Threshold'
        f'<input class="ecco-routes-threshold" type="range" min="{floor}" max="0.5" step="0.01" value="{threshold}">'
        '</label><span class="ecco-routes-value"></span><span class="ecco-routes-count"></span></div>'
        '<div class="ecco-routes-help">Hover an edge or a node for its numbers; click a node to highlight the '
        "routes through it (click again to clear). Edge width = importance; heads in their colours, the residual "
        'stream grey, FFNs green.</div><div class="ecco-routes-canvas"></div><div class="ecco-routes-tip"></div>'
        f"{json_block(payload)}{runner('routes', view_id)}</div>"
    )


def verify_scatter(result):
    """Each head's and FFN's DLA against its exact ablation effect, after :func:`ecco_core.circuits.verify`.

    One point per component (heads and FFNs in two colours), DLA's top ``k``
    ringed, the routes graph's top ``k`` (when verification checked it) in
    open diamonds; the dotted line is equality. DLA is a direct effect and ablation
    a total one, so points off the line are components whose effect runs
    through later blocks (or is undone by them).
    """
    import plotly.graph_objects as go

    if result.exact_heads is None:
        raise invalid("result", "a result without exact effects", "one from circuits.verify(..., exact=True)")
    n_layers, n_heads = result.heads.shape
    labels = np.array(result.components)
    dla, exact = result.component_values, result.exact_values
    top = np.isin(labels, result.top(result.k))
    exact_top = np.isin(labels, result.exact_top)
    is_head = np.arange(len(labels)) < n_layers * n_heads
    figure = go.Figure()
    for name, mask, color in (("heads", is_head, "#4e79a7"), ("FFNs", ~is_head, SITE_COLORS["ffn"])):
        figure.add_trace(go.Scatter(
            x=dla[mask], y=exact[mask], mode="markers", name=name,
            marker={"size": np.where(top[mask], 11, 6), "color": color, "opacity": 0.75,
                    "line": {"width": np.where(top[mask], 2, 0), "color": "#ff4b4b"}},
            customdata=np.column_stack([labels[mask], np.where(exact_top[mask], "yes", "no")]),
            hovertemplate="%{customdata[0]}<br>DLA %{x:.3f}<br>exact effect %{y:.3f}<br>in the exact top "
            + str(result.k) + ": %{customdata[1]}<extra></extra>",
        ))
    if result.route_checked:
        by_routes = np.isin(labels, result.route_top(result.k, result.route_threshold))
        figure.add_trace(go.Scatter(
            x=dla[by_routes], y=exact[by_routes], mode="markers", name=f"routes graph's top {result.k}",
            marker={"size": 16, "symbol": "diamond-open", "color": "#f28e2b", "line": {"width": 2}},
            customdata=labels[by_routes], hovertemplate="%{customdata}: in the routes graph's top "
            + str(result.k) + "<extra></extra>",
        ))
    low = float(min(dla.min(), exact.min()))
    high = float(max(dla.max(), exact.max()))
    figure.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines", name="equal",
                                line={"color": "#999", "dash": "dot"}, hoverinfo="skip"))
    figure.update_layout(
        xaxis_title="direct logit attribution (logits)", yaxis_title="exact effect of ablating it alone (logits)",
        height=440, margin={"l": 10, "r": 10, "t": 40, "b": 10}, hoverlabel=HOVER_LABEL,
        title=escape_text(f"DLA's top {result.k} ringed: recall of the exact top {result.k} = {result.recall:.0%}"
                          + (f"; the routes graph's: {result.route_recall:.0%}" if result.route_checked else "")),
        legend={"orientation": "h", "y": -0.18},
    )
    return figure
