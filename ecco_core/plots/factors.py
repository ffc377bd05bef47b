"""Neuron factors: sparklines per factor, and the Ecco paper's Figure 9 as interactive HTML."""

from __future__ import annotations

import uuid

import numpy as np

from .._checks import entries, invalid, shaped
from ..text import escape_text, escape_token, stripped_token
from .common import margins
from .views import json_block, runner, view_style


def factor_sparklines(token_activations, tokens, *, positions=None, selected: int | None = None, labels=None):
    """One small line chart per factor: its activation over the tokens (the Ecco paper's Figure 9).

    Each point carries ``customdata = [factor, position]`` so a click in
    Streamlit (``st.plotly_chart(on_select=...)``) tells which factor was picked.

    Parameters
    ----------
    token_activations : array-like of shape (n_components, n_tokens)
    tokens : sequence of str, length n_tokens
        Shown on hover (escaped).
    positions : sequence of int, length n_tokens, optional
        The tokens' positions in the text (``Factors.positions`` when some
        were left out); ``0 .. n_tokens - 1`` by default.
    selected : int, optional
        Factor drawn in a strong colour; the others are grey.
    labels : sequence of str, length n_components, optional
        Row titles; ``"F0"``, ``"F1"``, ... by default.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    values = np.asarray(token_activations, dtype=float)
    n_components, n_tokens = values.shape
    entries("tokens", tokens, n_tokens, "one per column of token_activations")
    labels = [escape_text(label) for label in ([f"F{factor}" for factor in range(n_components)]
                                               if labels is None else labels)]
    positions = np.arange(n_tokens) if positions is None else np.asarray(positions, dtype=int)
    entries("positions", positions, n_tokens, "one per column of token_activations")
    hover = [f"{position}: {escape_token(token)}" for position, token in zip(positions, tokens)]
    figure = make_subplots(rows=n_components, cols=1, shared_xaxes=True, vertical_spacing=0.004)
    for factor, row in enumerate(values):
        color = "#2962ff" if factor == selected else "#8a8f98"
        figure.add_trace(
            go.Scatter(
                x=positions, y=row, mode="lines+markers", line={"width": 2 if factor == selected else 1.2,
                                                                 "color": color},
                marker={"size": 3, "color": color}, fill="tozeroy",
                # Plain lists: a numpy customdata travels as a typed array and comes back from the
                # browser's selection as {"0": factor, "1": position} instead of a pair.
                customdata=[[factor, int(position)] for position in positions],
                name=labels[factor], text=hover,
                hovertemplate="%{fullData.name} %{text}<br>%{y:.3f}<extra></extra>",
                showlegend=False,
            ),
            row=factor + 1, col=1,
        )
        figure.update_yaxes(title={"text": labels[factor], "standoff": 2}, showticklabels=False,
                            showgrid=False, zeroline=False, row=factor + 1, col=1)
    # Half a position of margin on each side, so the end points can be clicked too.
    span = [float(positions.min()) - 0.5, float(positions.max()) + 0.5] if len(positions) else None
    figure.update_xaxes(showgrid=False, showticklabels=False, range=span)
    figure.update_xaxes(showticklabels=True, title="token position", row=n_components, col=1)
    figure.update_layout(height=48 * n_components + 70, margin=margins(),
                         clickmode="event+select", hovermode="closest")
    return figure


# Tableau 10: distinct, mid-dark hues that stay readable as pale backgrounds; more factors reuse them.
FACTOR_COLORS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
                 "#9c755f", "#bab0ac")

def _rgb(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))


def _factor_shading(color: str, strength: float) -> str:
    """Inline style of a token shaded by a factor's colour at ``strength`` in [0, 1] (as the script does)."""
    rgb = _rgb(color)
    mixed = [255 - strength * (255 - channel) for channel in rgb]
    light = (0.299 * mixed[0] + 0.587 * mixed[1] + 0.114 * mixed[2]) / 255
    text = "; color: #fff" if light < 0.55 else ""
    return f"background-color: rgba({rgb[0]}, {rgb[1]}, {rgb[2]}, {strength:.3f}){text}"


def factor_levels(token_activations) -> tuple[np.ndarray, np.ndarray]:
    """Each factor's activation as a share of its own peak, and each token's strongest factor.

    Parameters
    ----------
    token_activations : array-like of shape (n_components, n_tokens)

    Returns
    -------
    levels : ndarray of shape (n_components, n_tokens)
        ``max(activation, 0) / peak`` per factor, in [0, 1] (a factor that
        never fires above 0 is all 0).
    dominant : ndarray of shape (n_tokens,), int
        The factor with the highest level on each token (the lowest index on ties).
    """
    values = np.nan_to_num(np.asarray(token_activations, dtype=float))
    if values.ndim != 2 or values.shape[0] == 0:
        raise shaped("token_activations", values, "(n_components, n_tokens), n_components >= 1")
    positive = np.maximum(values, 0.0)
    peaks = positive.max(axis=1, keepdims=True, initial=0.0)
    levels = np.divide(positive, peaks, out=np.zeros_like(positive), where=peaks > 0)
    return levels, levels.argmax(axis=0)


def factor_view_html(token_activations, tokens, *, text_tokens=None, positions=None, labels=None,
                     n_input: int | None = None, script: bool = True) -> str:
    """The Ecco paper's Figure 9 as one self-contained HTML block: sparklines beside the coloured text.

    Every analysed token is shaded in the colour of its strongest factor
    (one colour per factor), as strongly as that factor fires there relative
    to its own peak. Hovering a factor's sparkline shows that factor alone on
    the text (its colour, its level on every token); clicking a sparkline
    keeps it; hovering a point of a sparkline outlines its token. All of it
    runs in the browser from an inline script (no CDN, no server): the same
    string works in Streamlit (``st.components.v1.html``), in a notebook
    (``IPython.display.HTML``) and as a saved file.

    Parameters
    ----------
    token_activations : array-like of shape (n_components, n_tokens)
        ``Factors.token_activations``: each factor's activation on each analysed token.
    tokens : sequence of str, length n_tokens
        The analysed tokens; they name the sparklines' x axis (escaped).
    text_tokens : sequence of str, optional
        The whole text (e.g. ``Capture.tokens``), when some tokens were left
        out of the analysis; those are shown unshaded. Defaults to ``tokens``.
    positions : sequence of int, length n_tokens, optional
        Where the analysed tokens sit in ``text_tokens`` (``Factors.positions``);
        ``0 .. n_tokens - 1`` by default.
    labels : sequence of str, length n_components, optional
        Factor names; ``"F0"``, ``"F1"``, ... by default.
    n_input : int, optional
        Text tokens from this position on are underlined as generated.
    script : bool, default True
        Include the inline ``<script>`` that runs the view (a notebook or a
        saved file); a page that runs ``eccoFactorView`` itself leaves it out.

    Returns
    -------
    str
        A ``<div>`` with its ``<style>``, inline SVG, the tokens as escaped spans, the numbers as JSON
        and a ``<script>`` (:mod:`ecco_core.plots.views`).
    """
    values = np.asarray(token_activations, dtype=float)
    levels, dominant = factor_levels(values)
    n_components, n_tokens = values.shape
    entries("tokens", tokens, n_tokens, "one per column of token_activations")
    text_tokens = list(tokens) if text_tokens is None else list(text_tokens)
    positions = np.arange(n_tokens) if positions is None else np.asarray(positions, dtype=int)
    entries("positions", positions, n_tokens, "one per column of token_activations")
    if n_tokens and not (0 <= positions.min() and positions.max() < len(text_tokens)):
        raise invalid("positions", positions.tolist(), f"token positions in 0 .. {len(text_tokens) - 1} (the text's)")
    labels = entries("labels", [f"F{factor}" for factor in range(n_components)] if labels is None else labels,
                     n_components, "one per factor")
    colors = [FACTOR_COLORS[factor % len(FACTOR_COLORS)] for factor in range(n_components)]
    # Without the script the markup is the same for the same result (a component redraws only on change).
    view_id = f"ecco-factors-{uuid.uuid4().hex[:10]}"
    identity = f' id="{view_id}"' if script else ""
    svg = _sparklines_svg(values, tokens, positions, labels, colors)
    spans = _shaded_text(text_tokens, positions, levels, dominant, labels, colors, n_input)
    payload = {"colors": [_rgb(color) for color in colors], "levels": np.round(levels, 4).tolist(),
               "dominant": dominant.tolist()}
    return (
        f'<div{identity} class="ecco-factor-view"><style>{view_style("factor")}</style>'
        f'<div class="ecco-sparklines-box">{svg}</div><div class="ecco-text">{spans}</div>'
        f'{json_block(payload)}{runner("factor", view_id) if script else ""}</div>'
    )


def _sparklines_svg(values, tokens, positions, labels, colors) -> str:
    """The factor view's sparklines as inline SVG: one row per factor, the analysed tokens along x, named below."""
    n_components, n_tokens = values.shape
    step = float(np.clip(660 / max(n_tokens, 1), 6, 22))
    label_width, row_height, pad = 34, 30, 3
    width = label_width + step * n_tokens + 4
    label_every = int(np.ceil(12 / step))  # every token is named while labels fit side by side
    longest = max((len(escape_token(token)) for token in tokens), default=1)
    axis_height = 14 + 6.5 * min(longest + 5, 18)
    height = n_components * row_height + axis_height
    low = min(values.min(initial=0.0), 0.0)
    svg = [f'<svg class="ecco-sparklines" width="{width:.0f}" height="{height:.0f}">']
    for factor in range(n_components):
        top = factor * row_height
        row = values[factor]
        high = max(row.max(initial=0.0), 1e-12)
        y = top + row_height - pad - (row - low) / (high - low) * (row_height - 2 * pad)
        x = label_width + step * (np.arange(n_tokens) + 0.5)
        baseline = top + row_height - pad - (0 - low) / (high - low) * (row_height - 2 * pad)
        line = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, y))
        area = f"{x[0]:.1f},{baseline:.1f} {line} {x[-1]:.1f},{baseline:.1f}" if n_tokens else ""
        svg.append(f'<g class="ecco-spark" data-factor="{factor}">')
        svg.append(f'<rect x="0" y="{top}" width="{width:.0f}" height="{row_height}" fill="#fff"/>')
        svg.append(f'<text x="2" y="{top + row_height / 2 + 4:.1f}" fill="{colors[factor]}" '
                   f'font-weight="bold">{escape_token(labels[factor])}</text>')
        svg.append(f'<polygon points="{area}" fill="{colors[factor]}" fill-opacity="0.3"/>')
        svg.append(f'<polyline points="{line}" fill="none" stroke="{colors[factor]}" stroke-width="1.5"/>')
        for column in range(n_tokens):
            svg.append(
                f'<rect class="ecco-column" data-column="{column}" x="{label_width + step * column:.1f}" '
                f'y="{top}" width="{step:.1f}" height="{row_height}" fill="transparent">'
                f'<title>{escape_token(labels[factor])} on {positions[column]}: '
                f'{escape_token(tokens[column])} = {row[column]:.3g}</title></rect>'
            )
        svg.append("</g>")
    axis_top = n_components * row_height + 6
    for column in range(0, n_tokens, label_every):
        x = label_width + step * (column + 0.5) + 3.5
        svg.append(f'<text class="ecco-axis-label" x="{x:.1f}" y="{axis_top:.1f}" text-anchor="end" '
                   f'transform="rotate(-90 {x:.1f} {axis_top:.1f})" fill="#444">'
                   f'{escape_token(stripped_token(tokens[column]))}</text>')
    svg.append("</svg>")
    return "".join(svg)


def _shaded_text(text_tokens, positions, levels, dominant, labels, colors, n_input) -> str:
    """The text as escaped spans: analysed tokens shaded by their strongest factor, the others plain."""
    column_of = {int(position): column for column, position in enumerate(positions)}
    spans = []
    for position, token in enumerate(text_tokens):
        style = "border-bottom: 2px solid #888" if n_input is not None and position >= n_input else ""
        column = column_of.get(position)
        if column is None:
            spans.append(f'<span class="ecco-token" title="{position}: left out of the analysis" '
                         f'style="{style + "; " if style else ""}color: #999">{escape_token(token)}</span>')
            continue
        factor = int(dominant[column])
        title = f"{position}: strongest {escape_token(labels[factor])} ({levels[factor, column]:.0%} of its peak)"
        shading = _factor_shading(colors[factor], float(levels[factor, column]))
        spans.append(f'<span class="ecco-token" data-column="{column}" title="{title}" '
                     f'style="{style + "; " if style else ""}{shading}">{escape_token(token)}</span>')
    return "".join(spans)
