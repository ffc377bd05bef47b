"""Attention: one head's query x key map, bertviz's model view and its head view (interactive HTML)."""

from __future__ import annotations

import uuid

import numpy as np

from .._checks import entries, shaped
from ..layers import block_label
from ..text import axis_labels, escape_text, escape_token, stripped_token
from .common import HOVER_LABEL, heatmap, margins
from .views import json_block, runner, view_style


def head_colors(n_heads: int) -> list[str]:
    """One colour per head, hues evenly around the wheel (any number of heads), dark enough for thin lines."""
    return [f"hsl({round(360 * head / max(n_heads, 1))}, 70%, 42%)" for head in range(n_heads)]


#: Above this many tokens the attention heatmap lays no marker over each cell (n_tokens**2 of them
#: stall the browser); Plotly's own heatmap hover answers instead, with the same text.
MARKED_TOKENS = 100


def attention_heatmap(att, layer: int, head: int = 0):
    """Query x key map of one head of one block of an :class:`ecco_core.Attention`, with a tooltip per cell.

    Rows are the attending (query) tokens, columns the attended (key) tokens;
    cells a causal query cannot see stay blank. The tooltip names both tokens
    and the score; for value-weighted attention also its share of the row.
    Up to :data:`MARKED_TOKENS` tokens it is a :func:`heatmap` (cells clickable
    in Streamlit, ``customdata = [query, key]``); above, a plain heatmap whose
    own hover gives the same text, at most 900 pixels high.
    """
    import plotly.graph_objects as go


    scores = np.asarray(att.map(layer, head), dtype=float)
    sums = scores.sum(axis=-1, keepdims=True)
    shares = np.divide(scores, sums, out=np.zeros_like(scores), where=sums > 0)
    n_tokens = att.n_tokens
    visible = np.tril(np.ones((n_tokens, n_tokens), bool)) if att.causal else np.ones((n_tokens, n_tokens), bool)
    labels = axis_labels(att.tokens)
    entry = att.method_entry
    name = entry.score_name
    share = not entry.rows_sum_to_one
    title = f"{block_label(layer)}, {att.heads[head]}: {entry.title}"  # plain text, escaped where drawn
    axes = {"x_title": "key token (attended to)", "y_title": "query token (attending)"}
    if n_tokens > MARKED_TOKENS:
        figure = go.Figure(
            go.Heatmap(
                z=np.where(visible, scores, np.nan), x=labels, y=labels, colorscale="Blues", zmin=0.0,
                colorbar={"title": {"text": name}}, customdata=shares, hoverongaps=False,
                hovertemplate=f"query %{{y}}<br>key %{{x}}<br>{name} %{{z:.3f}}"
                + (" (%{customdata:.1%} of the row)" if share else "") + "<extra></extra>",
            )
        )
        figure.update_layout(
            title=escape_text(title), xaxis_title=axes["x_title"], yaxis_title=axes["y_title"], height=900,
            hoverlabel=HOVER_LABEL,
            margin=margins(title),
        )
        figure.update_xaxes(type="category", tickangle=-45)
        figure.update_yaxes(type="category", autorange="reversed")
        return figure
    hover = [
        [
            f"query {labels[query]}<br>key {labels[key]}<br>{name} {scores[query, key]:.3f}"
            + (f" ({shares[query, key]:.1%} of the row)" if share else "")
            if visible[query, key] else f"query {labels[query]} cannot see key {labels[key]}"
            for key in range(n_tokens)
        ]
        for query in range(n_tokens)
    ]
    figure = heatmap(
        np.where(visible, scores, np.nan), labels, labels, hover=hover, colorscale="Blues", colorbar_title=name,
        title=title, **axes,
    )
    figure.update_traces(zmin=0.0, selector={"type": "heatmap"})
    return figure


def attention_model_view(att, *, selected: tuple[int, int] | None = None, size: int = 32):
    """bertviz's model view: every computed block (rows) x head (columns) as a small map, one click away.

    Each map is :meth:`ecco_core.Attention.thumbnails` (rows normalised,
    max-pooled to at most ``size`` pixels, scaled to its own peak, so every
    head's pattern shows), coloured by the square root, so that weights
    spread over many tokens stay visible beside a sink's. The tooltip says where the head looks on average
    (:meth:`ecco_core.Attention.head_summary`). One near-invisible marker per
    map carries ``customdata = [block, head]`` (the block's index in the
    model, not its row), read back with ``dashboard.clicked_cell(event)``;
    ``hoverdistance=-1`` lets the whole map answer.

    Parameters
    ----------
    att : ecco_core.Attention
    selected : (block, head), optional
        The map to outline.
    size : int
        Largest thumbnail, in pixels of the map.

    Returns
    -------
    plotly.graph_objects.Figure
        Sized so that maps are square, 24 to 64 screen pixels each.
    """
    import plotly.graph_objects as go


    tiles = np.sqrt(att.thumbnails(size))
    n_kept, n_heads, n_pixels, _ = tiles.shape
    gap = max(1, n_pixels // 6)
    step = n_pixels + gap
    image = np.full((n_kept * step - gap, n_heads * step - gap), np.nan)
    for row in range(n_kept):
        for head in range(n_heads):
            image[row * step:row * step + n_pixels, head * step:head * step + n_pixels] = tiles[row, head]
    centres = step * np.arange(max(n_kept, n_heads)) + (n_pixels - 1) / 2
    summary = att.head_summary()
    hover = [
        f"{block_label(block)}, {escape_text(head_name)}<br>on average a query puts<br>"
        f"{first:.0%} on the first token, {previous:.0%} on the previous, {same:.0%} on itself<br>click to open"
        for block, head_name, first, previous, same in
        summary[["block", "head", "first_token", "previous_token", "same_token"]].itertuples(index=False)
    ]
    figure = go.Figure(go.Heatmap(z=image, colorscale="Blues", zmin=0, zmax=1, showscale=False, hoverinfo="skip"))
    figure.add_trace(
        go.Scatter(
            x=np.tile(centres[:n_heads], n_kept), y=np.repeat(centres[:n_kept], n_heads), mode="markers",
            marker={"size": 18, "opacity": 0.01, "symbol": "square", "color": "#31333f"},
            customdata=[[int(block), head] for block in att.layers for head in range(n_heads)],
            hovertext=hover, hoverinfo="text", showlegend=False,
        )
    )
    if selected is not None and selected[0] in att.layers and 0 <= selected[1] < n_heads:
        row, head = att.layers.index(selected[0]), selected[1]
        figure.add_shape(
            type="rect", x0=head * step - 0.5 - gap / 2, x1=head * step + n_pixels - 0.5 + gap / 2,
            y0=row * step - 0.5 - gap / 2, y1=row * step + n_pixels - 0.5 + gap / 2,
            line={"color": "#ff4b4b", "width": 3},
        )
    tile = float(np.clip(min(480 / n_heads, 1100 / n_kept), 24, 64))
    head_names = [escape_text(name.removeprefix("head ")) for name in att.heads]
    figure.update_layout(
        width=int(tile * n_heads + 90), height=int(tile * n_kept + 70), hoverdistance=-1,
        hoverlabel=HOVER_LABEL,
        margin=margins(top=60), plot_bgcolor="white",
    )
    figure.update_xaxes(
        side="top", title={"text": "head", "standoff": 4}, tickvals=centres[:n_heads].tolist(), ticktext=head_names,
        range=[-0.5 - gap, image.shape[1] - 0.5 + gap], showgrid=False, zeroline=False, fixedrange=True,
    )
    figure.update_yaxes(
        tickvals=centres[:n_kept].tolist(), ticktext=[block_label(block) for block in att.layers],
        range=[image.shape[0] - 0.5 + gap, -0.5 - gap], showgrid=False, zeroline=False, fixedrange=True,
    )
    return figure


def attention_head_view_html(weights, tokens, *, heads=None, n_input: int | None = None, title: str = "",
                             min_weight: float = 0.01, max_lines: int = 20_000) -> str:
    """bertviz's head view as one self-contained HTML block: tokens in two columns joined by attention lines.

    Each query token (left) is joined to each key token (right) by one line
    per head, in that head's colour, as opaque as the weight. Hovering a token
    shows only its lines (a query's to its keys, a key's from its queries)
    and shades the tokens at their other ends; clicking a head's swatch hides
    or shows its lines, double-clicking shows it alone; a long text scrolls
    inside the view (760 pixels high at most). The lines are drawn in
    the browser by an inline script from numbers only (no token text in the
    script, no CDN): the same string works in Streamlit (``st.html(...,
    unsafe_allow_javascript=True)``), in a notebook and as a saved file.

    Parameters
    ----------
    weights : array-like of shape (n_heads, n_tokens, n_tokens)
        Row ``i`` is query ``i``'s attention over the keys (rows summing to 1 read best).
    tokens : sequence of str, length n_tokens
        Escaped here; whitespace shown as marks.
    heads : sequence of str, length n_heads, optional
        Head names for the swatches' tooltips; ``"head 0"`` ... by default.
    n_input : int, optional
        Tokens from this position on are underlined as generated.
    title : str
        A line above the view (escaped).
    min_weight : float
        Lines below this weight are not drawn (invisible anyway; a long text
        would otherwise send n_heads * n_tokens**2 of them).
    max_lines : int
        At most this many lines, the strongest (ties kept): a browser slows
        down past some tens of thousands of SVG lines (a 500-token text has
        ~80,000 above 0.01 in the causal default's 9 heads).

    Returns
    -------
    str
        A ``<div>`` with its ``<style>``, the escaped tokens, a JSON block of numbers only,
        and a ``<script>`` that draws the lines as an SVG (built in the browser: an
        SVG in the string itself would be stripped by Streamlit's sanitiser).
    """
    weights = np.nan_to_num(np.asarray(weights, dtype=float))
    if weights.ndim != 3 or weights.shape[1] != weights.shape[2]:
        raise shaped("weights", weights, "(n_heads, n_tokens, n_tokens)")
    n_heads, n_tokens, _ = weights.shape
    entries("tokens", tokens, n_tokens, "one per row of weights")
    heads = entries("heads", [f"head {head}" for head in range(n_heads)] if heads is None else heads, n_heads,
                    "one per head of weights")
    colors = head_colors(n_heads)
    view_id = f"ecco-heads-{uuid.uuid4().hex[:10]}"
    row, gap = 22, 170
    query, key = (_head_view_column(side, tokens, n_input, row) for side in ("query", "key"))
    swatches = "".join(
        f'<span class="ecco-head-toggle" data-head="{head}" title="{escape_token(name)}: click to hide or show, '
        f'double-click to show it alone" style="background: {colors[head]}">{head}</span>'
        for head, name in enumerate(heads)
    )
    payload = {"colors": colors, "lines": _head_view_lines(weights, min_weight, max_lines), "row": row,
               "width": gap, "n_tokens": n_tokens}
    return (
        f'<div id="{view_id}" class="ecco-head-view"><style>{view_style("head")}</style>'
        + (f'<div class="ecco-title">{escape_text(title)}</div>' if title else "")
        + f'<div class="ecco-heads">{swatches}</div>'
        '<div class="ecco-help">Hover a token to see its lines alone; '
        "click a head to hide or show it, double-click to show it alone.</div>"
        '<div class="ecco-scroll"><div class="ecco-header"><div class="ecco-label-query">query</div>'
        f'<div style="flex: none; width: {gap}px"></div><div class="ecco-label-key">key</div></div>'
        f'<div class="ecco-columns">{query}'
        f'<div class="ecco-lines" style="width: {gap}px; height: {row * n_tokens}px"></div>'
        f"{key}</div></div>{json_block(payload)}{runner('head', view_id)}</div>"
    )


def _head_view_column(side: str, tokens, n_input: int | None, row: int) -> str:
    """One column of the head view: every token (escaped), ``row`` pixels high, generated ones underlined."""
    cells = []
    for position, token in enumerate(tokens):
        text = escape_token(stripped_token(token))
        underline = "; text-decoration: underline" if n_input is not None and position >= n_input else ""
        cells.append(
            f'<div class="ecco-token" data-side="{side}" data-position="{position}" title="{position}: {text}" '
            f'style="height: {row}px; line-height: {row}px{underline}">{text}</div>'
        )
    return f'<div class="ecco-side-{side}">{"".join(cells)}</div>'


def _head_view_lines(weights: np.ndarray, min_weight: float, max_lines: int) -> list:
    """Per head, ``[queries, keys, weights]`` of the lines to draw: at least ``min_weight``, the ``max_lines`` strongest."""
    drawn = weights >= min_weight
    if drawn.sum() > max_lines:
        drawn &= weights >= np.partition(weights[drawn], -max_lines)[-max_lines]
    lines = []
    for head in range(weights.shape[0]):
        queries, keys = np.nonzero(drawn[head])
        lines.append([queries.tolist(), keys.tolist(), np.round(weights[head][queries, keys], 3).tolist()])
    return lines
