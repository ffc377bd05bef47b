"""Causal tracing (activation patching): ROME's Figure 1, one panel per site, and exact vs approximate."""

from __future__ import annotations

import numpy as np

from ..layers import block_label
from ..text import axis_labels, escape_quoted, escape_text, escape_token
from .common import heatmap, margins


#: One colour per site, as in ROME's Figure 1 (hidden states purple, MLP green, attention red).
SITE_COLORS = {"residual": "#54278f", "ffn": "#006d2c", "attention": "#a50f15"}
SITES_TITLES = {"residual": "Block output (residual stream)", "attention": "Attention output", "ffn": "FFN output"}


def _patching_position_labels(result) -> list[str]:
    """Axis labels of the positions; a corrupted one is starred, with its corrupted token if it changed."""
    labels = axis_labels(result.tokens)
    for position in result.corrupted_positions:
        changed = result.corrupted_tokens[position] != result.tokens[position]
        labels[position] += f" → {escape_token(result.corrupted_tokens[position]).strip()}" if changed else "*"
    return labels


def patching_heatmap(result, site: str, *, pinned: tuple[int, int] | None = None, title: str | None = None):
    """Effect of restoring ``site`` at each (position, block): one panel of ROME's Figure 1.

    Positions run down, blocks across; the colour is the normalised effect
    (0 = the corrupted run, 1 = the clean run). Hovering a cell shows the
    effect, the raw metric and the patched run's top predictions (escaped).
    Cells are clickable in Streamlit (``customdata = [position, block]``).

    Parameters
    ----------
    result : ecco_core.patching.Patching
    site : str
        One of ``result.sites``.
    pinned : (position, block), optional
        A cell to outline.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    effects = result.site(site).T  # (n_tokens, n_layers)
    values = result.values[result.sites.index(site)].T
    index = result.sites.index(site)
    hover = np.empty(effects.shape, dtype=object)
    for position in range(result.n_tokens):
        token = escape_quoted(result.tokens[position])
        for layer in range(result.n_layers):
            lines = [
                f"restore {result.restored_label(site, layer)} at {position} {token}",
                f"effect {effects[position, layer]:.3f} ({result.metric} {values[position, layer]:.3f}; "
                f"clean {result.clean_value:.3f}, corrupted {result.corrupted_value:.3f})",
            ]
            if result.top_ids.shape[-1]:
                lines.append("patched run's top predictions:")
                lines += [
                    f"{rank + 1}. {escape_quoted(text)} ({probability:.3f})"
                    for rank, (text, probability) in enumerate(
                        zip(result.top_tokens[index][layer][position], result.top_probs[index, layer, position])
                    )
                ]
            else:
                lines.append("estimated to first order (attribution patching): no patched run")
            hover[position, layer] = "<br>".join(lines)
    # White at 0 (the corrupted run), the site's colour at the top, blue below 0 (a patch that hurts), as
    # deep at -x as the site's colour is at +x: a small negative effect stays pale.
    low, high = min(0.0, float(np.nanmin(effects))), max(1.0, float(np.nanmax(effects)))
    zero = -low / (high - low)
    depth = min(1.0, -low / high)
    blue = "rgb({}, {}, {})".format(*(round(255 + (channel - 255) * depth) for channel in (33, 102, 172)))
    colorscale = ([[0.0, blue]] if zero > 0 else []) + [[zero, "#ffffff"], [1.0, SITE_COLORS[site]]]
    figure = heatmap(
        effects, [block_label(layer) for layer in range(result.n_layers)], _patching_position_labels(result),
        hover=hover, colorscale=colorscale, colorbar_title="effect",
        title=SITES_TITLES[site] if title is None else title, x_title="restored block", y_title="position",
    )
    figure.update_traces(zmin=low, zmax=high, selector={"type": "heatmap"})
    if pinned is not None:
        position, layer = pinned
        figure.add_shape(type="rect", x0=layer - 0.5, x1=layer + 0.5, y0=position - 0.5, y1=position + 0.5,
                         line={"color": "#ff4b4b", "width": 3})
    return figure


def patching_figure(result, *, title: str = ""):
    """All sites of a result side by side in one figure (ROME's Figure 1), for a file or a notebook.

    The panels are :func:`patching_heatmap`'s, with their hover text.
    """
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=len(result.sites), shared_yaxes=True, horizontal_spacing=0.04,
                           subplot_titles=[SITES_TITLES[site] for site in result.sites])
    for column, site in enumerate(result.sites, start=1):
        for trace in patching_heatmap(result, site).data:
            if trace.type == "heatmap":
                trace.update(colorbar={"title": {"text": "effect"}, "x": column / len(result.sites) - 0.01,
                                       "len": 0.3, "y": 0.15, "thickness": 10})
            figure.add_trace(trace, row=1, col=column)
    figure.update_xaxes(type="category", tickangle=-45)
    figure.update_yaxes(type="category", autorange="reversed")
    figure.update_layout(title=escape_text(title or f"{result.method}: {result.corruption}"), hoverdistance=-1,
                         height=max(320, 28 * result.n_tokens + 160), width=max(900, 480 * len(result.sites)))
    return figure


def patching_scatter(exact, approximate):
    """Each cell's exact effect against its attribution-patching estimate, one colour per site."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for site in exact.sites:
        figure.add_trace(go.Scattergl(
            x=exact.site(site).ravel(), y=approximate.site(site).ravel(), mode="markers", name=SITES_TITLES[site],
            marker={"size": 5, "color": SITE_COLORS[site], "opacity": 0.6},
            hovertemplate="exact %{x:.3f}<br>approximate %{y:.3f}<extra>" + SITES_TITLES[site] + "</extra>",
        ))
    low = float(min(exact.effects.min(), approximate.effects.min()))
    high = float(max(exact.effects.max(), approximate.effects.max()))
    figure.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines", name="equal",
                                line={"color": "#999", "dash": "dot"}, hoverinfo="skip"))
    figure.update_layout(xaxis_title="exact effect (activation patching)",
                         yaxis_title="estimated effect (attribution patching)", height=420,
                         margin=margins())
    return figure
