"""Figures of how far to trust a view (:mod:`ecco_core.trust`): data in, ``go.Figure`` out.

>>> ec.plots.faithfulness_bars(ec.trust.faithfulness(lm, cap, positions=7), 7)   # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

#: Bar colours of the two ERASER curves, and the random baseline's.
COMPREHENSIVENESS_COLOR = "#1f77b4"
SUFFICIENCY_COLOR = "#ff7f0e"


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
