"""Figures of how far to trust a view (:mod:`ecco_core.trust`): data in, ``go.Figure`` out.

Small companions drawn beside the view they qualify; no computing beyond what the result already holds.

>>> ec.plots.faithfulness_bars(ec.trust.faithfulness(lm, cap, positions=7), 7)   # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from ..text import escape_text

#: Bar colours of the two ERASER curves, and the random baseline's.
COMPREHENSIVENESS_COLOR = "#1f77b4"
SUFFICIENCY_COLOR = "#ff7f0e"
#: Height of a companion figure that does not share its view's rows (the view stays the larger).
COMPANION_HEIGHT = 240


def faithfulness_bars(result, position: int):
    """Each method's AOPC comprehensiveness and sufficiency for the explained token at ``position``, beside random.

    Parameters
    ----------
    result : Faithfulness
        From :func:`ecco_core.trust.faithfulness`.
    position : int
        Sequence position of an explained token of ``result``.

    Returns
    -------
    go.Figure
        Grouped bars, one group per method and a last one, ``random``, the
        mean over the random orders with their standard deviation as error
        bars. Comprehensiveness higher than random means the method found the
        tokens the model uses; sufficiency lower than random means they
        suffice alone.
    """
    import plotly.graph_objects as go

    index = result.index_of(position)
    names = [*result.methods, f"random ({result.n_random})"]
    ddof = 1 if result.n_random > 1 else 0
    figure = go.Figure()
    for curve, label, color in (("comprehensiveness", "comprehensiveness (higher: more faithful)",
                                 COMPREHENSIVENESS_COLOR),
                                ("sufficiency", "sufficiency (lower: more faithful)", SUFFICIENCY_COLOR)):
        methods = result.aopc(getattr(result, curve))[:, index]
        random = result.aopc(getattr(result, f"random_{curve}"))[:, index]
        values = np.append(methods, random.mean())
        spread = np.append(np.full(len(methods), np.nan), random.std(ddof=ddof))
        figure.add_bar(
            x=names, y=values, name=label, marker={"color": color, "pattern": {
                "shape": ["" for _ in methods] + ["/"], "fillmode": "overlay"}},
            error_y={"type": "data", "array": spread, "visible": True, "color": "#555"},
            hovertemplate="%{x}: %{y:.4f}<extra>" + curve + "</extra>",
        )
    figure.update_layout(
        barmode="group", height=340, margin={"l": 10, "r": 10, "t": 10, "b": 10},
        yaxis_title="AOPC: drop in the token's probability", legend={"orientation": "h", "y": -0.2},
    )
    shown = np.concatenate([np.asarray(trace.y, dtype=float) for trace in figure.data])
    low, high = min(0.0, float(shown.min())), max(0.0, float(shown.max()))
    room = 0.1 * (high - low) or 0.1  # above the tallest bar, for its error bar
    figure.update_yaxes(range=[low - (room if low < 0 else 0.0), high + room], zeroline=True)
    return figure


def permutation_figure(baseline, *, title: str = ""):
    """The similarity score against its null: the scores of shuffled token positions as a histogram, the real one as a line.

    Parameters
    ----------
    baseline : ecco_core.trust.PermutationBaseline
        ``score``, ``null`` of shape (n_permutations,), ``p_value``.
    title : str
        Plain text (escaped here).

    Returns
    -------
    plotly.graph_objects.Figure
        Scores on a fixed axis from 0 to 1, as the similarity matrix's colours.
    """
    import plotly.graph_objects as go

    null = np.asarray(baseline.null, dtype=float)
    figure = go.Figure(go.Histogram(
        x=null, xbins={"start": 0.0, "end": 1.0, "size": 0.02}, marker={"color": "#bbb"}, name="shuffled",
        hovertemplate="shuffled positions: %{y} of " + f"{len(null)}" + " scores in %{x}<extra></extra>",
    ))
    figure.add_vline(x=baseline.score, line={"color": "#440154", "width": 3})
    figure.add_annotation(x=baseline.score, y=1, yref="paper", yanchor="bottom", showarrow=False,
                          text=f"{baseline.score:.2f}", font={"color": "#440154"})
    figure.update_layout(
        title={"text": escape_text(title), "font": {"size": 14}}, showlegend=False, bargap=0.05,
        height=COMPANION_HEIGHT,
        xaxis={"range": [0, 1], "title": "score"}, yaxis={"title": "shuffles"},
        margin={"l": 10, "r": 10, "t": 40 if title else 24, "b": 10},
    )
    return figure
