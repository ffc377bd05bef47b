"""Saliency: the output x input heatmap, one token's bars, and the Ecco paper's Figure 3 as interactive HTML."""

from __future__ import annotations

import uuid

import numpy as np

from .._checks import invalid
from ..text import axis_labels, escape_text, escape_token, quoted_token
from .common import heatmap, margins
from .views import json_block, runner, view_script, view_style


# The diverging pair of signed saliency (ColorBrewer RdBu's ends): evidence for the explained token, against it.
SIGNED_COLORS = {"for": "33, 102, 172", "against": "178, 24, 43"}
SHARE_COLOR = "41, 98, 255"


def _saliency_values(sal, signed: bool) -> np.ndarray:
    """Percent per (explained token, token): shares, or signed shares in [-100, 100]."""
    return 100.0 * (sal.signed_shares() if signed else np.asarray(sal.scores, dtype=float))


def _signed_colorscale() -> list:
    against, evidence = (f"rgb({SIGNED_COLORS[side]})" for side in ("against", "for"))
    blank = "rgb(247, 247, 247)"
    return [[0.0, against], [0.5, blank], [1.0, evidence]]


def saliency_heatmap(sal, *, signed: bool = False, title: str = ""):
    """Output x input heatmap of a :class:`ecco_core.Saliency`, in percent, clickable per cell.

    Rows are the explained tokens, columns every token of the sequence;
    cells a causal row cannot see stay blank. Read a click back with
    ``dashboard.clicked_cell(event)``: its row indexes ``sal.positions``.
    ``signed`` shows :meth:`Saliency.signed_shares` on a diverging scale
    centred on 0 (blue: for the explained token, red: against it, i.e. for the foil).
    """
    percent = _saliency_values(sal, signed)
    visible = sal.attributed_mask()
    shown = np.where(visible, percent, np.nan)
    text = np.where(visible, np.char.mod("%.0f", np.nan_to_num(percent)), "")
    hover = [
        [
            f"{escape_token(sal.tokens[column])} \u2192 {escape_token(explained)}: {percent[row, column]:+.1f}%"
            if signed else
            f"{escape_token(sal.tokens[column])} \u2192 {escape_token(explained)}: {percent[row, column]:.1f}%"
            for column in range(sal.n_tokens)
        ]
        for row, explained in enumerate(sal.explained_tokens)
    ]
    labels = axis_labels(sal.tokens)
    figure = heatmap(
        shown, labels, [labels[position] for position in sal.positions], text=text, hover=hover,
        colorscale=_signed_colorscale() if signed else "Blues", colorbar_title="signed %" if signed else "%",
        title=title, x_title="input token", y_title="explained token",
    )
    if signed:
        bound = max(float(np.nanmax(np.abs(shown), initial=0.0)), 1e-12)
        figure.update_traces(zmid=0.0, zmin=-bound, zmax=bound, selector={"type": "heatmap"})
    return figure


def saliency_bars(tokens, scores, *, signed: bool = False, title: str = ""):
    """Each input token's share of one explained token (the Ecco paper's Figure 4 detail view).

    Parameters
    ----------
    tokens : sequence of str, length n_tokens
    scores : array-like of shape (n_tokens,)
        One row of ``Saliency.scores`` (sums to 1), or with ``signed`` one
        row of ``Saliency.signed_shares()`` (magnitudes sum to 1): bars to the
        right (blue) are evidence for the explained token, to the left (red)
        against it (for the foil).
    """
    import plotly.graph_objects as go
    from plotly.colors import sample_colorscale

    percent = 100.0 * np.asarray(scores, dtype=float)
    largest = max(np.abs(percent).max(initial=0.0), 1e-12)
    labels = axis_labels(tokens)
    if signed:
        # explicit colours: plotly.js derives text and hover colours from marker.color,
        # and logs a warning per bar when that holds numbers for a colorscale
        colors = sample_colorscale(_signed_colorscale(), np.clip(0.5 + percent / (2 * largest), 0, 1))
        text = [f"{value:+.1f}%" for value in percent]
        x_title, x_range = "signed share (%): + for the token, \u2212 against it", [-1.3 * largest, 1.3 * largest]
    else:
        colors = sample_colorscale("Blues", np.clip(percent / largest, 0, 1))
        text = [f"{value:.1f}%" for value in percent]
        x_title, x_range = "share of the attribution (%)", [0, 1.15 * largest]  # room for the labels
    figure = go.Figure(
        go.Bar(
            # "auto": inside a bar long enough to hold its label, else beyond its end. Always outside, the
            # label of a long negative bar ran past the plot's left edge and lost its sign ("9.6%" for -39.6%)
            x=percent, y=labels, orientation="h", marker={"color": colors}, text=text, textposition="auto",
            hovertext=[f"{escape_token(token)}: {label}" for token, label in zip(tokens, text)], hoverinfo="text",
        )
    )
    figure.update_layout(
        title=escape_text(title), xaxis_title=x_title,
        margin=margins(title), height=max(220, 24 * len(labels) + 80),
    )
    figure.update_xaxes(range=x_range, zeroline=True)
    figure.update_yaxes(type="category", autorange="reversed")
    return figure


def saliency_row_bars(sal, position: int, *, signed: bool = False, title: str = ""):
    """:func:`saliency_bars` of the explained token at sequence ``position``: every token it can see.

    The figure beside :meth:`ecco_core.Saliency.detail_frame`; ``signed``
    shows :meth:`ecco_core.Saliency.signed_shares` (a method with a sign only).
    """
    index = sal.index_of(position)
    kept = np.flatnonzero(sal.attributed_mask()[index])
    values = (sal.signed_shares() if signed else sal.scores)[index]
    return saliency_bars([sal.tokens[column] for column in kept], values[kept], signed=signed, title=title)


# Figure 3's behaviour (the file saliency_view.js), shared by the notebook HTML (run by an inline <script>) and
# the Streamlit component (dashboard), which renders the same markup and calls eccoSaliencyView with a pin callback.
SALIENCY_VIEW_SCRIPT = view_script("saliency")


def saliency_view_html(sal, position: int | None = None, *, signed: bool = False, script: bool = True) -> str:
    """The Ecco paper's Figure 3 as one self-contained HTML block: hover a token to see what it depends on.

    The text is shown with every explained token (generated, or a
    ``[MASK]``) underlined. Hovering, focusing or tapping one shades every
    token by its share of that token's attribution at once, in the browser
    (all rows travel with the page, nothing is recomputed); leaving restores
    the pinned token; clicking (or Enter) pins it. Tokens the explained one
    cannot see (after it, in a causal model) are greyed. Token text is
    escaped and whitespace shown (:func:`escape_token`).

    Parameters
    ----------
    sal : ecco_core.Saliency
        ``scores`` (or ``signed_shares()``) of shape (n_generated, n_tokens).
    position : int, optional
        Sequence position of the explained token pinned first; the first by default.
    signed : bool, default False
        Shade by :meth:`Saliency.signed_shares` on a diverging scale: blue is
        evidence for the explained token, red against it (for the foil, with
        a contrast). Otherwise by the unsigned share, in blue.
    script : bool, default True
        Include the inline ``<script>`` that runs the view (a notebook or a
        saved page). The Streamlit component renders the markup without it and
        calls :data:`SALIENCY_VIEW_SCRIPT`'s ``eccoSaliencyView(root, onPin)`` itself.

    Returns
    -------
    str
        A ``<div class="ecco-saliency-view">`` with escaped token spans, the
        rows as JSON and (with ``script``) the script; nothing is fetched.
    """
    values = _saliency_values(sal, signed) / 100.0
    positions = [int(p) for p in sal.positions]
    pinned = positions[0] if position is None else int(position)
    if pinned not in positions:
        raise invalid("position", position, f"an explained position, one of {positions}")
    foil = f" \u2212 {sal.target}({quoted_token(sal.contrast_with)})" if sal.contrast_with else ""
    labels = [  # plain text: the script sets them as textContent
        f"Explaining {quoted_token(token)} (position {p}): "
        f"{sal.target}({quoted_token(token)}){foil} = {value:.4g}"
        for p, token, value in zip(positions, sal.explained_tokens, np.asarray(sal.target_values, dtype=float))
    ]
    spans = "".join(
        f'<span class="ecco-token ecco-explained" data-position="{column}" tabindex="0">{escape_token(token)}</span>'
        if column in positions else f'<span class="ecco-token" data-position="{column}">{escape_token(token)}</span>'
        for column, token in enumerate(sal.tokens)
    )
    payload = {
        "rows": np.round(np.nan_to_num(values), 4).tolist(), "positions": positions, "pinned": pinned,
        "labels": labels, "causal": bool(sal.causal),
        "evidence": SIGNED_COLORS["for"] if signed else SHARE_COLOR, "against": SIGNED_COLORS["against"],
    }
    # Without the script the markup is the same for the same result (the component redraws only on change).
    view_id = f"ecco-saliency-{uuid.uuid4().hex[:10]}"
    identity = f' id="{view_id}"' if script else ""
    method = f"{sal.method_label}, {'signed' if signed else 'unsigned'}"
    return (
        f'<div{identity} class="ecco-saliency-view">'
        f'<style>{view_style("saliency")}</style><div class="ecco-saliency-header">'
        '<span class="ecco-saliency-label"></span>'
        f'<span class="ecco-saliency-legend">{_saliency_legend(sal, signed, foil)} \u00b7 {escape_token(method)} '
        "\u00b7 hover a token with a line under it, click to pin it</span></div>"
        f'<div class="ecco-text">{spans}</div>{json_block(payload)}{runner("saliency", view_id) if script else ""}'
        "</div>"
    )


def _saliency_legend(sal, signed: bool, foil: str) -> str:
    """What the saliency view's colours mean (escaped HTML): for and against, or the share of what."""
    if signed:
        against = f"the foil {quoted_token(sal.contrast_with)}" if sal.contrast_with else "against it"
        return (f'<span style="color: rgb({SIGNED_COLORS["for"]}); font-weight: 600">\u25a0 for the token</span>'
                f' \u00b7 <span style="color: rgb({SIGNED_COLORS["against"]}); font-weight: 600">'
                f"\u25a0 {'for ' if sal.contrast_with else ''}{escape_token(against)}</span>")
    quantity = f"{sal.target}(\u2026){foil}"
    return (f'<span style="color: rgb({SHARE_COLOR}); font-weight: 600">\u25a0</span> share of '
            f"{escape_token(quantity)}, darkest = the largest")
