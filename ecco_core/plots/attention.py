"""Attention: one head's query x key map, bertviz's model view and its head view (interactive HTML)."""

from __future__ import annotations

import numpy as np

from .._checks import entries, shaped
from ..layers import block_label
from ..text import axis_labels, escape_text, escape_token, stripped_token
from .common import HOVER_LABEL, heatmap, margins


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
        for block, head_name, first, previous, same in summary.itertuples(index=False)
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
        A ``<div>`` with the escaped tokens, a JSON block of numbers only, and a
        ``<script>`` that draws the lines as an SVG (built in the browser: an
        SVG in the string itself would be stripped by Streamlit's sanitiser).
    """
    import json
    import uuid

    weights = np.nan_to_num(np.asarray(weights, dtype=float))
    if weights.ndim != 3 or weights.shape[1] != weights.shape[2]:
        raise shaped("weights", weights, "(n_heads, n_tokens, n_tokens)")
    n_heads, n_tokens, _ = weights.shape
    entries("tokens", tokens, n_tokens, "one per row of weights")
    heads = entries("heads", [f"head {head}" for head in range(n_heads)] if heads is None else heads, n_heads,
                    "one per head of weights")
    colors = head_colors(n_heads)
    view_id = f"ecco-heads-{uuid.uuid4().hex[:10]}"

    shown = [escape_token(stripped_token(token)) for token in tokens]
    row, gap = 22, 170
    columns = []
    for side, align in (("query", "right"), ("key", "left")):
        cells = []
        for position, text in enumerate(shown):
            underline = "; text-decoration: underline" if n_input is not None and position >= n_input else ""
            cells.append(
                f'<div class="ecco-token" data-side="{side}" data-position="{position}" title="{position}: {text}" '
                f'style="height: {row}px; line-height: {row}px; padding: 0 6px; border-radius: 3px; '
                f'text-align: {align}; white-space: pre{underline}">{text}</div>'
            )
        columns.append(f'<div class="ecco-side-{side}" style="flex: none">{"".join(cells)}</div>')
    swatches = "".join(
        f'<span class="ecco-head-toggle" data-head="{head}" title="{escape_token(name)}: click to hide or show, '
        f'double-click to show it alone" style="display: inline-block; min-width: 22px; padding: 2px 4px; '
        f'margin: 0 3px 3px 0; border-radius: 3px; background: {colors[head]}; color: white; font-size: 12px; '
        f'text-align: center; cursor: pointer; user-select: none">{head}</span>'
        for head, name in enumerate(heads)
    )
    drawn = weights >= min_weight
    if drawn.sum() > max_lines:
        drawn &= weights >= np.partition(weights[drawn], -max_lines)[-max_lines]
    sparse = []
    for head in range(n_heads):
        queries, keys = np.nonzero(drawn[head])
        sparse.append([queries.tolist(), keys.tolist(), np.round(weights[head][queries, keys], 3).tolist()])
    payload = {"colors": colors, "lines": sparse, "row": row, "width": gap, "n_tokens": n_tokens}
    header = (
        '<div style="display: flex; font-size: 12px; color: #888; margin-bottom: 2px">'
        '<div class="ecco-label-query" style="flex: none; box-sizing: border-box; text-align: right; '
        'padding: 0 6px">query</div>'
        f'<div style="flex: none; width: {gap}px"></div><div style="padding: 0 6px">key</div></div>'
    )
    return (
        f'<div id="{view_id}" class="ecco-head-view" style="font-family: sans-serif; color: #31333f">'
        + (f'<div style="font-weight: 600; margin-bottom: 4px">{escape_text(title)}</div>' if title else "")
        + f'<div class="ecco-heads" style="margin-bottom: 4px">{swatches}</div>'
        '<div style="font-size: 12px; color: #888; margin-bottom: 8px">Hover a token to see its lines alone; '
        "click a head to hide or show it, double-click to show it alone.</div>"
        f'<div class="ecco-scroll" style="overflow: auto; max-height: 760px">{header}'
        f'<div style="display: flex; font-size: 14px">{columns[0]}'
        f'<div class="ecco-lines" style="flex: none; width: {gap}px; height: {row * n_tokens}px"></div>'
        f"{columns[1]}</div></div>"
        f'<script type="application/json">{json.dumps(payload)}</script>'
        f"<script>{_HEAD_VIEW_SCRIPT.replace('__VIEW_ID__', json.dumps(view_id))}</script>"
        "</div>"
    )


_HEAD_VIEW_SCRIPT = """
(function () {
  const root = document.getElementById(__VIEW_ID__);
  const data = JSON.parse(root.querySelector("script[type='application/json']").textContent);
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", data.width); svg.setAttribute("height", data.row * data.n_tokens);
  svg.style.display = "block";
  root.querySelector(".ecco-lines").appendChild(svg);
  root.querySelector(".ecco-label-query").style.width = root.querySelector(".ecco-side-query").offsetWidth + "px";
  const shown = new Set(data.colors.map((_, head) => head));
  const middle = row => data.row * (row + 0.5);
  const byPosition = {query: {}, key: {}};  // position -> [head, line] of the lines at that token
  const groups = data.lines.map(([queries, keys, weights], head) => {
    const group = document.createElementNS(NS, "g");
    group.setAttribute("class", "ecco-head-lines");
    group.dataset.head = head;
    queries.forEach((query, n) => {
      const line = document.createElementNS(NS, "line");
      line.setAttribute("x1", 2); line.setAttribute("x2", data.width - 2);
      line.setAttribute("y1", middle(query)); line.setAttribute("y2", middle(keys[n]));
      line.setAttribute("stroke", data.colors[head]); line.setAttribute("stroke-width", 2);
      line.setAttribute("stroke-opacity", weights[n]);
      line.dataset.query = query; line.dataset.key = keys[n]; line.dataset.weight = weights[n];
      group.appendChild(line);
      (byPosition.query[query] = byPosition.query[query] || []).push([head, line]);
      (byPosition.key[keys[n]] = byPosition.key[keys[n]] || []).push([head, line]);
    });
    svg.appendChild(group);
    return group;
  });
  // A hovered token's lines are copied into this layer and every head's own layer is hidden: a few
  // hundred elements change, not the n_heads * n_tokens**2 of a long text.
  const focusLayer = document.createElementNS(NS, "g");
  svg.appendChild(focusLayer);
  const tokens = root.querySelectorAll(".ecco-token");
  const toggles = root.querySelectorAll(".ecco-head-toggle");
  const tint = (color, alpha) => color.replace("hsl(", "hsla(").replace(")", ", " + alpha.toFixed(3) + ")");
  let focus = null;  // [side, position] of the hovered token
  function draw() {
    focusLayer.replaceChildren();
    const other = {};  // position on the other side -> [weight, head] of its strongest shown line
    if (focus !== null) {
      const copies = {};
      (byPosition[focus[0]][focus[1]] || []).forEach(([head, line]) => {
        if (!shown.has(head)) return;
        if (!copies[head]) {
          copies[head] = document.createElementNS(NS, "g");
          copies[head].setAttribute("class", "ecco-head-lines ecco-focus-lines");
          copies[head].dataset.head = head;
          focusLayer.appendChild(copies[head]);
        }
        copies[head].appendChild(line.cloneNode());
        const end = line.dataset[focus[0] === "query" ? "key" : "query"];
        const weight = Number(line.dataset.weight);
        if (!other[end] || other[end][0] < weight) other[end] = [weight, head];
      });
    }
    groups.forEach((group, head) => { group.style.display = focus === null && shown.has(head) ? "" : "none"; });
    toggles.forEach(toggle => { toggle.style.opacity = shown.has(Number(toggle.dataset.head)) ? 1 : 0.25; });
    tokens.forEach(token => {
      const self = focus !== null && token.dataset.side === focus[0] && token.dataset.position === focus[1];
      const end = focus !== null && token.dataset.side !== focus[0] && other[token.dataset.position];
      token.style.backgroundColor = self ? "rgba(49, 51, 63, 0.12)"
        : end ? tint(data.colors[end[1]], Math.min(1, 0.1 + end[0])) : "";
      token.style.color = end && end[0] > 0.5 ? "#fff" : "";
      token.style.fontWeight = self ? "bold" : "";
    });
    root.dataset.focus = focus === null ? "" : focus.join(" ");
  }
  tokens.forEach(token => {
    token.addEventListener("mouseenter", () => { focus = [token.dataset.side, token.dataset.position]; draw(); });
    token.addEventListener("mouseleave", () => { focus = null; draw(); });
  });
  toggles.forEach(toggle => {
    const head = Number(toggle.dataset.head);
    toggle.addEventListener("click", () => { shown.has(head) ? shown.delete(head) : shown.add(head); draw(); });
    toggle.addEventListener("dblclick", () => {
      const alone = shown.size === 1 && shown.has(head);
      shown.clear();
      (alone ? data.colors.map((_, h) => h) : [head]).forEach(h => shown.add(h));
      draw();
    });
  });
  draw();
})();
"""
