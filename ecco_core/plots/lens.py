"""Layer predictions (the logit lens): ranks and probabilities of tokens at every block's output."""

from __future__ import annotations

import numpy as np

from .._checks import indices
from ..text import bare_token, escape_text, escape_token, position_label
from .common import heatmap, margins


def _rank_column_labels(rankings) -> list[str]:
    """Unique x labels: the candidates as given, or ``"position: token"`` for tokens of the text."""
    if rankings.kind == "candidate":
        labels = [
            f"{bare_token(candidate)}{' (1st token)' if split else ''}"
            for candidate, split in zip(rankings.candidates, rankings.first_token_only)
        ]
        seen: dict[str, int] = {}
        for index, label in enumerate(labels):
            seen[label] = seen.get(label, 0) + 1
            if seen[label] > 1:
                labels[index] = f"{label} #{seen[label]}"
        return [escape_token(label) for label in labels]
    return [
        position_label(position, token) for position, token in zip(rankings.target_positions, rankings.targets)
    ]


def rankings_figure(rankings, *, title: str = "", top: int = 5, diagnostics=None):
    """Rank of each column's token at every block's output: the paper's Figures 7 and 8.

    Blocks run down (labelled ``"block i"``, ``hidden_states[i + 1]``), columns across; each cell shows the rank and is coloured
    by log10(rank), darkest at rank 1. Hovering a cell lists that layer's top
    predictions there (escaped). Cells are clickable in Streamlit
    (``customdata = [layer_index, column]``).

    Parameters
    ----------
    rankings : ecco_core.lens.Rankings
        ``ranks`` of shape (n_layers, n_columns).
    title : str
    top : int, default 5
        How many of the layer's predictions the hover lists (at most ``rankings.k``).
    diagnostics : ecco_core.trust.LensDiagnostics, optional
        How far to trust each row: two narrow panels right of the heatmap, on
        its rows, with the lens's mean KL to the model's output (nats) and its
        top-1 agreement with it (a dotted line at 0.5).

    Returns
    -------
    plotly.graph_objects.Figure
    """
    ranks = rankings.ranks
    top = min(top, rankings.k)
    hover = np.empty(ranks.shape, dtype=object)
    for layer in range(rankings.n_layers):
        for column in range(rankings.n_columns):
            predictions = "<br>".join(
                f"{place + 1}. {escape_token(token)} ({probability:.3f})"
                for place, (token, probability) in enumerate(
                    zip(rankings.top_tokens[layer][column][:top], rankings.top_probs[layer, column, :top])
                )
            )
            label = rankings.layer_labels[layer]
            hover[layer, column] = (
                f"{label}: {escape_token(rankings.targets[column])} is rank {ranks[layer, column]}"
                f" (p={rankings.probs[layer, column]:.3g})<br>{label}'s top {top}:<br>{predictions}"
            )
    log_ranks = np.log10(ranks)
    figure = heatmap(
        ranks,
        _rank_column_labels(rankings),
        list(rankings.layer_labels),
        text=ranks.astype(str),
        hover=hover,
        color_values=log_ranks,
        colorscale="Blues_r",
        title=title,
        x_title="candidate" if rankings.kind == "candidate" else "token",
        y_title="layer (block output read through the final norm + LM head)",
    )
    decades = 10 ** np.arange(int(np.ceil(log_ranks.max())) + 1 if log_ranks.size else 1)
    colorbar = {"title": {"text": "rank"}, "tickvals": np.log10(decades), "ticktext": [f"{d:,}" for d in decades]}
    figure.update_traces(zmin=0, colorbar=colorbar, selector={"type": "heatmap"})
    if diagnostics is not None:
        _add_trust_panels(figure, list(rankings.layer_labels), diagnostics)
    return figure


def _add_trust_panels(figure, labels: list[str], diagnostics) -> None:
    """The lens's KL and top-1 agreement for each row of the rank heatmap, as two panels on its own y axis."""
    import plotly.graph_objects as go

    rows = {label: row for row, label in enumerate(diagnostics.layer_labels)}
    panels = [
        ("x2", diagnostics.mean_kl, "KL (nats)", "#54278f", "%{y}: KL %{x:.2f} nats"),
        ("x3", diagnostics.top1_agreement, "top-1", "#006d2c", "%{y}: top-1 agrees on %{x:.0%} of positions"),
    ]
    for axis, values, name, color, template in panels:
        figure.add_trace(go.Scatter(
            x=[float(values[rows[label]]) for label in labels], y=labels, xaxis=axis, yaxis="y", name=name,
            mode="lines+markers", marker={"size": 4}, line={"color": color}, showlegend=False,
            hovertemplate=template + "<extra></extra>",
        ))
    side = {"side": "top", "automargin": True, "tickfont": {"size": 10}, "title_font": {"size": 12}}
    figure.update_layout(
        xaxis_domain=[0, 0.8],
        xaxis2={"domain": [0.83, 0.905], "title_text": "KL (nats)", "rangemode": "tozero", "nticks": 3, **side},
        xaxis3={"domain": [0.925, 1.0], "title_text": "top-1", "range": [-0.05, 1.05], "tickvals": [0, 1], **side},
    )
    figure.add_shape(type="line", x0=0.5, x1=0.5, xref="x3", y0=0, y1=1, yref="y domain",
                     line={"color": "#999", "dash": "dot", "width": 1})


def layer_probability_figure(rankings, columns, *, title: str = ""):
    """Probability of the chosen columns' tokens at every block's output, one line each (log scale).

    With one column, a dashed line adds the probability of each block's own
    top prediction (hover names it), to show what the token competes with.
    The x axis is labelled ``"block i"`` (``hidden_states[i + 1]``).

    Parameters
    ----------
    rankings : ecco_core.lens.Rankings
    columns : sequence of int
        Column indices into ``rankings`` (0 .. n_columns - 1).

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    columns = indices("columns", columns, rankings.n_columns, "column").tolist()
    labels = _rank_column_labels(rankings)
    figure = go.Figure()
    for column in columns:
        figure.add_trace(
            go.Scatter(
                x=rankings.layer_labels, y=rankings.probs[:, column], mode="lines+markers", name=labels[column],
                customdata=rankings.ranks[:, column],
                # The trace's name, not the label pasted into the template: a token "%{y}" stays text.
                hovertemplate="%{x}: p=%{y:.3g}, rank %{customdata}<extra>%{fullData.name}</extra>",
            )
        )
    if len(columns) == 1:
        column = columns[0]
        figure.add_trace(
            go.Scatter(
                x=rankings.layer_labels, y=rankings.top_probs[:, column, 0], mode="lines",
                name="the block's top prediction",
                line={"dash": "dash", "color": "#999"},
                hovertext=[escape_token(rankings.top_tokens[layer][column][0]) for layer in range(rankings.n_layers)],
                hovertemplate="%{x}: %{hovertext} p=%{y:.3g}<extra></extra>",
            )
        )
    shown = [rankings.probs[:, column] for column in columns]
    if len(columns) == 1:
        shown.append(rankings.top_probs[:, columns[0], 0])
    figure.update_layout(
        title=escape_text(title), xaxis_title="layer (block output read through the final norm + LM head)",
        yaxis=_probability_axis(np.concatenate(shown)),
        # The legend on the right, Plotly's default: one under the plot ran into the x axis title once the
        # rotated block labels pushed the title down.
        margin=margins(title), height=360,
    )
    figure.update_xaxes(type="category", categoryorder="array", categoryarray=list(rankings.layer_labels))
    return figure


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _probability_axis(probabilities: np.ndarray) -> dict:
    """A log axis for probabilities: ticks at powers of ten written as numbers ("1", "0.01", "10⁻⁵"), none above 1.

    Plotly's own log ticks label the range's padding above 1 ("2") and write small
    probabilities with SI prefixes ("100µ"), which read as units, not probabilities.
    """
    positive = probabilities[probabilities > 0]
    low = int(np.floor(np.log10(positive.min()))) if positive.size else -1
    step = max(1, -(low // 8))  # at most 9 labelled ticks
    powers = list(range(0, low - step, -step))  # down to the lowest value or just below it
    return {
        "title": "probability", "type": "log", "range": [powers[-1] - 0.1, 0.1],
        "tickvals": [10.0**power for power in powers],
        "ticktext": [f"{10.0**power:g}" if power >= -3 else f"10{str(power).translate(_SUPERSCRIPT)}"
                     for power in powers],
    }
