"""Pure figure and HTML builders: data in, ``go.Figure`` or an HTML string out.

No Streamlit and no computing here; every builder works the same in a
notebook (``fig.show()``, ``IPython.display.HTML(...)``). All token text that
reaches HTML goes through :func:`escape_token`, and every other text a
figure shows (titles, axis titles, names in hover labels) through
:func:`escape_text`: Plotly reads a subset of HTML there (``<b>``, ``<br>``),
so a token ``"<br>"`` would otherwise break a title in two. Builders take
titles as plain text and escape them themselves.
"""

from __future__ import annotations

import html

import numpy as np

from .._checks import choice, entries, indices, invalid, shaped, whole, words
from ..layers import block_label, depth_labels


_MARKS = str.maketrans({"\n": "\u21b5", "\r": "\u240d", "\t": "\u21e5", "\u00a0": "\u2423"})


def display_token(token: str, *, spaces: bool = False) -> str:
    """A token's text as every view shows it: whitespace that would vanish made visible.

    A newline shows as ``↵``, a tab as ``⇥``, a carriage return as ``␍``; a
    token that is spaces alone shows one ``␣`` per space, an empty one ``∅``. The
    space a word token starts with stays a plain space, so the text reads as
    text, unless ``spaces=True`` (tables and axes, where a leading space
    would be lost): then every space is ``␣``. Not escaped: HTML goes through
    :func:`escape_token`.

    >>> display_token(" Paris"), display_token(" "), display_token("\\n"), display_token(" Paris", spaces=True)
    (' Paris', '␣', '↵', '␣Paris')
    """
    shown = token.translate(_MARKS)
    if spaces or not shown.strip(" "):
        shown = shown.replace(" ", "\u2423")
    return shown or "\u2205"


def escape_text(text) -> str:
    """Plain text made literal where a browser or Plotly reads HTML: titles, axis titles, hover labels, spans.

    Quotes become numeric references (``&#34;``, ``&#39;``): plotly.js decodes those but not ``&quot;``,
    which it would draw as those six characters.

    >>> escape_text("Probability of '<br>'")
    'Probability of &#39;&lt;br&gt;&#39;'
    """
    return html.escape(str(text), quote=False).replace('"', "&#34;").replace("'", "&#39;")


def escape_token(token: str, *, spaces: bool = False) -> str:
    """:func:`display_token`, HTML-escaped: the one way token text reaches HTML (and Plotly's labels)."""
    return escape_text(display_token(token, spaces=spaces))


def cell_token(token: str, max_chars: int) -> str:
    """A token escaped for a heatmap cell at most ``max_chars`` characters wide: cut with ``…`` when longer.

    Cut before escaping, so no entity is split; the cell's hover keeps the whole token.

    >>> cell_token(" Shakespeare", 5), cell_token(" &", 5)
    ('Shak…', '&amp;')
    """
    whole("max_chars", max_chars, low=2)
    shown = display_token(token).strip(" ") or display_token(token)
    return html.escape(shown if len(shown) <= max_chars else shown[: max_chars - 1] + "\u2026", quote=True)


def token_html(
    tokens,
    values=None,
    *,
    selected: int | None = None,
    n_input: int | None = None,
    color: str = "41, 98, 255",
) -> str:
    """Tokens as inline HTML spans, each shaded by its value (darker = higher).

    Parameters
    ----------
    tokens : sequence of str, length n_tokens
    values : array-like of shape (n_tokens,), optional
        Non-negative weights; scaled by their maximum. ``None`` shades nothing.
    selected : int, optional
        Position to outline (the token being explained).
    n_input : int, optional
        Tokens from this position on are underlined as generated.
    color : str
        The shading's "r, g, b".

    Returns
    -------
    str
        A ``<div>`` whose every token is escaped.
    """
    weights = np.zeros(len(tokens)) if values is None else np.nan_to_num(np.asarray(values, dtype=float))
    entries("values", weights, len(tokens), "one per token")
    peak = weights.max() if len(weights) and weights.max() > 0 else 1.0
    spans = []
    for position, (token, weight) in enumerate(zip(tokens, weights)):
        alpha = max(0.0, float(weight) / peak)
        style = [f"background: rgba({color}, {alpha:.3f})", "border-radius: 3px", "padding: 1px 1px"]
        if alpha > 0.55:
            style.append("color: white")
        if position == selected:
            style.append("outline: 2px solid #ff4b4b")
        if n_input is not None and position >= n_input:
            style.append("border-bottom: 2px solid #888")
        title = f"{weight:.3f}" if values is not None else str(position)
        spans.append(
            f'<span title="{title}" style="{"; ".join(style)}">{escape_token(token)}</span>'
        )
    return (
        '<div style="font-family: monospace; font-size: 15px; line-height: 2.0; white-space: pre-wrap">'
        + "".join(spans)
        + "</div>"
    )


def position_labels(tokens) -> list[str]:
    """Unique, readable labels of token positions: ``"3: Paris"``, ``"4: ↵"``; plain text, for widgets and tables.

    A word's leading space is dropped (the position already separates it);
    whitespace tokens show as :func:`display_token` marks.
    """
    return [_position_text(position, token) for position, token in enumerate(tokens)]


def axis_labels(tokens) -> list[str]:
    """:func:`position_labels`, escaped: Plotly's axis labels (it merges equal category labels)."""
    return [escape_text(label) for label in position_labels(tokens)]


def _position_text(position: int, token: str) -> str:
    shown = display_token(token)
    return f"{position}: {shown.strip(' ') or shown}"


def _position_label(position: int, token: str) -> str:
    return escape_text(_position_text(position, token))


def heatmap(
    values,
    x_labels,
    y_labels,
    *,
    text=None,
    hover=None,
    colorscale: str = "Blues",
    color_values=None,
    colorbar_title: str = "",
    title: str = "",
    x_title: str = "",
    y_title: str = "",
    reverse_y: bool = True,
):
    """A heatmap whose cells can be clicked in Streamlit and show their tooltip on hover.

    A plain ``go.Heatmap`` returns no point to ``st.plotly_chart(on_select=...)``,
    so one near-invisible scatter marker is laid over each cell, carrying
    ``customdata = [row, column]``; read it back with
    ``dashboard.clicked_cell(event)``. That layer is what the pointer meets, so
    it carries the cells' hover text too (the heatmap's own hover is skipped),
    and ``hoverdistance=-1`` makes the nearest marker answer: on a grid the
    nearest centre is the cell under the pointer, so hover and click work
    anywhere in a cell, however large.

    Parameters
    ----------
    values : array-like of shape (n_rows, n_columns)
        Written in the cells (via ``text``) and used for colour unless
        ``color_values`` is given.
    x_labels : sequence of str, length n_columns
    y_labels : sequence of str, length n_rows
    text : array-like of str of shape (n_rows, n_columns), optional
        Text written in each cell.
    hover : array-like of str of shape (n_rows, n_columns), optional
        Hover text per cell (HTML-escaped by the caller: token text goes
        through :func:`escape_token`).
    colorbar_title, title, x_title, y_title : str
        Plain text (escaped here).
    color_values : array-like of shape (n_rows, n_columns), optional
        What the colour encodes (e.g. log rank), if not ``values``.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    values = np.asarray(values, dtype=float)
    n_rows, n_columns = values.shape
    color = values if color_values is None else np.asarray(color_values, dtype=float)
    x_labels, y_labels = list(x_labels), list(y_labels)
    figure = go.Figure(
        go.Heatmap(
            z=color, x=x_labels, y=y_labels, colorscale=colorscale,
            text=text, texttemplate="%{text}" if text is not None else None,
            hoverinfo="skip", colorbar={"title": {"text": escape_text(colorbar_title)}}, xgap=1, ygap=1,
        )
    )
    rows, columns = np.mgrid[0:n_rows, 0:n_columns]
    if hover is None:
        hover = [[f"{x_labels[column]}, {y_labels[row]}: {color[row, column]:.3g}" for column in range(n_columns)]
                 for row in range(n_rows)]
    figure.add_trace(
        go.Scatter(
            x=[x_labels[c] for c in columns.ravel()], y=[y_labels[r] for r in rows.ravel()],
            mode="markers", marker={"size": 18, "opacity": 0.01, "symbol": "square", "color": "#31333f"},
            customdata=np.stack([rows.ravel(), columns.ravel()], axis=1),
            hovertext=np.asarray(hover, dtype=object).ravel(), hoverinfo="text", showlegend=False,
        )
    )
    figure.update_layout(
        title=escape_text(title), xaxis_title=escape_text(x_title), yaxis_title=escape_text(y_title), hoverdistance=-1,
        hoverlabel={"bgcolor": "white", "bordercolor": "#31333f", "font": {"color": "#31333f", "size": 13}},
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
        height=max(260, 28 * n_rows + 120),
    )
    # Margins grow to fit every label (none clipped); 14 px keeps one-character punctuation legible, and a few
    # short labels stand upright (a lone "." or "," at -45 degrees is hard to find).
    upright = n_columns <= 8 and max((len(html.unescape(str(label))) for label in x_labels), default=0) <= 18
    figure.update_xaxes(type="category", tickangle=0 if upright else -45, automargin=True, tickfont={"size": 14})
    figure.update_yaxes(type="category", autorange="reversed" if reverse_y else True, automargin=True)
    return figure


# ---- next-token predictions (the home page)
#: The next-token heatmap's plot area in a 1400 px window (wide layout, sidebar open, measured in Chromium)
#: and the width of one of its 12 px characters: cells write their candidate only where it is legible.
NEXT_TOKEN_PLOT_PX, NEXT_TOKEN_CHAR_PX, NEXT_TOKEN_MIN_CHARS = 690, 8, 4


def next_token_heatmap(cap, k: int = 5, *, plot_px: int = NEXT_TOKEN_PLOT_PX, pinned=None):
    """What the model expected next at every position: its top ``k`` candidates, coloured by probability.

    Columns are the positions (after this token), rows the ranks. A cell
    writes its candidate (cut with ``…``) when at least
    :data:`NEXT_TOKEN_MIN_CHARS` characters of 12 px fit in a plot ``plot_px``
    wide; narrower cells leave it to the hover, which always holds the whole
    candidate and its probability (escaped). Cells are clickable in Streamlit
    (``customdata = [rank, position]``).

    Parameters
    ----------
    cap : ecco_core.Capture
        With at least one kept prediction (``top_ids`` of shape (n_tokens, >= 1)).
    k : int, default 5
        Candidates shown (fewer when the capture kept fewer).
    plot_px : int
        Width of the plot area in pixels, for the choice to write in the cells.
    pinned : (int, int), optional
        A cell to outline, as ``(rank - 1, position)`` (the clicked one).

    Returns
    -------
    plotly.graph_objects.Figure
    """
    kept = cap.top_ids.shape[1]
    if not kept:
        raise invalid("cap", words("one that kept none"), "a capture that kept its top predictions (k >= 1)")
    k = min(whole("k", k, low=1), kept)
    cell_chars = plot_px // (NEXT_TOKEN_CHAR_PX * cap.n_tokens)
    text = None
    if cell_chars >= NEXT_TOKEN_MIN_CHARS:
        text = [[cell_token(row[rank], cell_chars) for row in cap.top_tokens] for rank in range(k)]
    hover = [
        [
            f"after {escape_token(token)!r}: {escape_token(row[rank])!r}, p = {probs[rank]:.3f}"
            for token, row, probs in zip(cap.tokens, cap.top_tokens, cap.top_probs)
        ]
        for rank in range(k)
    ]
    figure = heatmap(
        cap.top_probs[:, :k].T, axis_labels(cap.tokens), [f"#{rank + 1}" for rank in range(k)],
        text=text, hover=hover, colorscale="Blues", colorbar_title="probability", x_title="after this token",
    )
    figure.update_traces(textfont={"size": 12}, selector={"type": "heatmap"})  # never shrunk below legibility
    if pinned is not None:
        row, position = (whole("pinned", value, low=0) for value in pinned)
        if row >= k or position >= cap.n_tokens:
            raise invalid("pinned", pinned, f"(row, position) within {k} rows and {cap.n_tokens} positions")
        figure.add_shape(type="rect", x0=position - 0.5, x1=position + 0.5, y0=row - 0.5, y1=row + 0.5,
                         line={"color": "#ff4b4b", "width": 3})
    return figure


# ---- layer predictions (logit lens)
def _rank_column_labels(rankings) -> list[str]:
    """Unique x labels: the candidates as given, or ``"position: token"`` for tokens of the text."""
    if rankings.kind == "candidate":
        labels = [
            f"{display_token(candidate).strip(' ') or display_token(candidate)}{' (1st token)' if split else ''}"
            for candidate, split in zip(rankings.candidates, rankings.first_token_only)
        ]
        seen: dict[str, int] = {}
        for index, label in enumerate(labels):
            seen[label] = seen.get(label, 0) + 1
            if seen[label] > 1:
                labels[index] = f"{label} #{seen[label]}"
        return [escape_token(label) for label in labels]
    return [
        _position_label(position, token) for position, token in zip(rankings.target_positions, rankings.targets)
    ]


def rankings_figure(rankings, *, title: str = "", top: int = 5):
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
    return figure


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
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10}, height=360,
        legend={"orientation": "h", "y": -0.2},
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


# ---- probing
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
    names = {"hidden": "hidden states", "ffn": "FFN activations"}
    figure = go.Figure()
    for representation, rows in frame.groupby("representation", sort=False):
        figure.add_trace(
            go.Scatter(
                x=depth_labels(rows), y=100 * rows[metric],
                error_y={"type": "data", "array": 100 * rows[metric + "_std"], "visible": True},
                mode="lines+markers", name=names.get(representation, representation),
                hovertext=[escape_token(label) for label in rows["layer"]],
                hovertemplate="%{hovertext}: %{y:.1f}%<extra></extra>",
            )
        )
    figure.update_layout(
        title=escape_text(title), xaxis_title="layer (the embeddings, then each block: its output and its FFN)",
        yaxis_title=f"{metric} (%)", legend_title="representation",
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10}, height=380,
    )
    figure.update_xaxes(type="category", categoryorder="array", categoryarray=list(dict.fromkeys(depth_labels(frame))))
    return figure


# ---- factors
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
    figure.update_layout(height=48 * n_components + 70, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                         clickmode="event+select", hovermode="closest")
    return figure


# Tableau 10: distinct, mid-dark hues that stay readable as pale backgrounds; more factors reuse them.
FACTOR_COLORS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
                 "#9c755f", "#bab0ac")

_FACTOR_VIEW_SCRIPT = """
(function () {
  const root = document.getElementById(__VIEW_ID__);
  const data = JSON.parse(root.querySelector("script[type='application/json']").textContent);
  const tokens = root.querySelectorAll(".ecco-token[data-column]");
  const rows = root.querySelectorAll(".ecco-spark");
  let pinned = null;
  function shade(span, factor, strength) {
    const [r, g, b] = data.colors[factor % data.colors.length];
    span.style.backgroundColor = "rgba(" + r + ", " + g + ", " + b + ", " + strength.toFixed(3) + ")";
    const mixed = [r, g, b].map(c => 255 - strength * (255 - c));
    const light = (0.299 * mixed[0] + 0.587 * mixed[1] + 0.114 * mixed[2]) / 255;
    span.style.color = light < 0.55 ? "#fff" : "";
  }
  function show(factor) {
    tokens.forEach(span => {
      const column = Number(span.dataset.column);
      if (factor === null) shade(span, data.dominant[column], data.levels[data.dominant[column]][column]);
      else shade(span, factor, data.levels[factor][column]);
    });
    rows.forEach((row, index) => { row.style.opacity = factor === null || index === factor ? 1 : 0.25; });
    root.dataset.factor = factor === null ? "" : String(factor);
  }
  rows.forEach((row, index) => {
    row.addEventListener("mouseenter", () => show(index));
    row.addEventListener("mouseleave", () => show(pinned));
    row.addEventListener("click", () => { pinned = pinned === index ? null : index; show(pinned); });
  });
  root.querySelectorAll(".ecco-column").forEach(cell => {
    const column = cell.dataset.column;
    const span = root.querySelector(".ecco-token[data-column='" + column + "']");
    cell.addEventListener("mouseenter", () => { span.style.outline = "2px solid #333"; });
    cell.addEventListener("mouseleave", () => { span.style.outline = ""; });
  });
  show(null);
})();
"""


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
                     n_input: int | None = None) -> str:
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

    Returns
    -------
    str
        A ``<div>`` with inline SVG, the tokens as escaped spans and a ``<script>``.
    """
    import json
    import uuid

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
    view_id = f"ecco-factors-{uuid.uuid4().hex[:10]}"

    # ---- sparklines: one row per factor, the analysed tokens along x, named below the last row
    step = float(np.clip(660 / max(n_tokens, 1), 6, 22))
    label_width, row_height, pad = 34, 30, 3
    width = label_width + step * n_tokens + 4
    label_every = int(np.ceil(12 / step))  # every token is named while labels fit side by side
    longest = max((len(escape_token(token)) for token in tokens), default=1)
    axis_height = 14 + 6.5 * min(longest + 5, 18)
    height = n_components * row_height + axis_height
    low = min(values.min(initial=0.0), 0.0)
    svg = [f'<svg class="ecco-sparklines" width="{width:.0f}" height="{height:.0f}" '
           f'style="font: 11px sans-serif; flex: none">']
    for factor in range(n_components):
        top = factor * row_height
        row = values[factor]
        high = max(row.max(initial=0.0), 1e-12)
        y = top + row_height - pad - (row - low) / (high - low) * (row_height - 2 * pad)
        x = label_width + step * (np.arange(n_tokens) + 0.5)
        baseline = top + row_height - pad - (0 - low) / (high - low) * (row_height - 2 * pad)
        line = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, y))
        area = f"{x[0]:.1f},{baseline:.1f} {line} {x[-1]:.1f},{baseline:.1f}" if n_tokens else ""
        svg.append(f'<g class="ecco-spark" data-factor="{factor}" style="cursor: pointer">')
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
                   f'{escape_token(_visible(tokens[column]))}</text>')
    svg.append("</svg>")

    # ---- the text: analysed tokens shaded by their strongest factor, the others plain
    column_of = {int(position): column for column, position in enumerate(positions)}
    spans = []
    for position, token in enumerate(text_tokens):
        style = "border-radius: 3px; padding: 1px 1px"
        if n_input is not None and position >= n_input:
            style += "; border-bottom: 2px solid #888"
        column = column_of.get(position)
        if column is None:
            spans.append(f'<span class="ecco-token" title="{position}: left out of the analysis" '
                         f'style="{style}; color: #999">{escape_token(token)}</span>')
            continue
        factor = int(dominant[column])
        title = f"{position}: strongest {escape_token(labels[factor])} ({levels[factor, column]:.0%} of its peak)"
        spans.append(
            f'<span class="ecco-token" data-column="{column}" title="{title}" '
            f'style="{style}; {_factor_shading(colors[factor], float(levels[factor, column]))}">'
            f"{escape_token(token)}</span>"
        )
    payload = {"colors": [_rgb(color) for color in colors], "levels": np.round(levels, 4).tolist(),
               "dominant": dominant.tolist()}
    return (
        f'<div id="{view_id}" class="ecco-factor-view" style="display: flex; flex-wrap: wrap; gap: 16px; '
        'align-items: flex-start; font-family: sans-serif">'
        f'<div style="overflow-x: auto; max-width: 100%">{"".join(svg)}</div>'
        '<div class="ecco-text" style="flex: 1 1 320px; font-family: monospace; font-size: 15px; '
        f'line-height: 2.0; white-space: pre-wrap">{"".join(spans)}</div>'
        f'<script type="application/json">{json.dumps(payload)}</script>'
        f"<script>{_FACTOR_VIEW_SCRIPT.replace('__VIEW_ID__', json.dumps(view_id))}</script>"
        "</div>"
    )


def _visible(token: str) -> str:
    """A token for an axis label: stripped, or its spaces as visible marks when it is only spaces."""
    return token.strip() or token.replace(" ", "\u2423")


def token_bars(values, tokens, *, title: str = "", y_title: str = "activation"):
    """Signed values per token as bars (positive blue, negative red), e.g. one neuron's activation.

    Parameters
    ----------
    values : array-like of shape (n_tokens,)
    tokens : sequence of str, length n_tokens

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    values = np.asarray(values, dtype=float)
    entries("values", values, len(tokens), "one per token")
    figure = go.Figure(
        go.Bar(
            x=axis_labels(tokens), y=values, marker_color=np.where(values >= 0, "#2962ff", "#e53935"),
            hovertext=[escape_token(token) for token in tokens], hoverinfo="text+y",
        )
    )
    figure.update_layout(title=escape_text(title), yaxis_title=escape_text(y_title), height=320,
                         margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10})
    figure.update_xaxes(type="category", tickangle=-45)
    return figure


# ---- similarity
def similarity_heatmap(result, *, decimals: int = 2):
    """Figure 6: a layers x layers similarity matrix, its value written in each cell.

    Parameters
    ----------
    result : ecco_core.similarity.SimilarityMatrix
        ``values`` of shape (n_rows, n_columns) in [0, 1], ``row_labels``,
        ``column_labels``, ``row_title``, ``column_title`` (axis titles),
        ``label`` (the method's name), ``n_samples``.
    decimals : int
        Digits written in the cells.

    Returns
    -------
    plotly.graph_objects.Figure
        Colour fixed to [0, 1] so figures of different methods compare.
    """
    values = np.asarray(result.values, dtype=float)
    rows, columns = list(result.row_labels), list(result.column_labels)
    text = np.vectorize(lambda value: f"{value:.{decimals}f}")(values)
    hover = [
        [f"{escape_token(row)} vs {escape_token(column)}: {value:.4f}" for column, value in zip(columns, line)]
        for row, line in zip(rows, values)
    ]
    figure = heatmap(
        values, columns, rows, text=text, hover=hover, colorscale="Viridis", colorbar_title=result.label,
        title=f"{result.label} similarity over {result.n_samples} token positions",
        x_title=result.column_title, y_title=result.row_title,
    )
    figure.update_traces(zmin=0.0, zmax=1.0, textfont={"size": 9}, selector={"type": "heatmap"})
    figure.update_layout(height=max(360, 22 * len(rows) + 160))
    return figure


# ---- saliency
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
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10}, height=max(220, 24 * len(labels) + 80),
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


# Figure 3's behaviour, shared by the notebook HTML (run by an inline <script>) and the Streamlit
# component (dashboard), which renders the same markup and calls this function with a pin callback.
SALIENCY_VIEW_SCRIPT = """
function eccoSaliencyView(root, onPin) {
  const data = JSON.parse(root.querySelector("script[type='application/json']").textContent);
  const spans = Array.from(root.querySelectorAll(".ecco-token"));
  const explained = Array.from(root.querySelectorAll(".ecco-explained"));
  const label = root.querySelector(".ecco-saliency-label");
  const rowOf = new Map(data.positions.map((position, row) => [position, row]));
  let pinned = data.pinned;
  function paint(position) {
    const row = rowOf.get(position), values = data.rows[row];
    let peak = 0;
    for (const value of values) peak = Math.max(peak, Math.abs(value));
    peak = peak || 1;
    for (let column = 0; column < spans.length; column++) {
      const span = spans[column], value = values[column];
      const seen = !data.causal || column < position;
      const strength = seen ? Math.abs(value) / peak : 0;
      const rgb = value < 0 ? data.against : data.evidence;
      span.style.backgroundColor = column === position ? "rgba(255, 75, 75, 0.12)"
        : strength > 0 ? "rgba(" + rgb + ", " + strength.toFixed(3) + ")" : "transparent";
      span.style.color = column === position ? "" : !seen ? "#9aa0a6" : strength > 0.55 ? "#fff" : "";
      span.style.outline = column === position ? "2px solid #ff4b4b"
        : column === pinned ? "1px dashed #ff4b4b" : "";
      span.title = column === position ? "explained token (" + column + ")"
        : seen ? column + ": " + (value * 100).toFixed(1) + "%" : column + ": after the explained token";
    }
    label.textContent = data.labels[row];
    root.dataset.shown = String(position);
  }
  function pin(position) {
    pinned = position;
    root.dataset.pinned = String(position);
    paint(position);
    if (onPin) onPin(position);
  }
  for (const span of explained) {
    const position = Number(span.dataset.position);
    span.addEventListener("mouseenter", () => paint(position));
    span.addEventListener("mouseleave", () => paint(pinned));
    span.addEventListener("focus", () => paint(position));
    span.addEventListener("blur", () => paint(pinned));
    span.addEventListener("click", () => pin(position));
    span.addEventListener("keydown", event => {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); pin(position); }
    });
  }
  root.dataset.pinned = String(pinned);
  paint(pinned);
}
"""


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
    import json
    import uuid

    values = _saliency_values(sal, signed) / 100.0
    positions = [int(p) for p in sal.positions]
    pinned = positions[0] if position is None else int(position)
    if pinned not in positions:
        raise invalid("position", position, f"an explained position, one of {positions}")
    foil = f" \u2212 {sal.target}('{display_token(sal.contrast_with)}')" if sal.contrast_with else ""
    quantity = f"{sal.target}(\u2026){foil}"
    labels = [  # plain text: the script sets them as textContent
        f"Explaining '{display_token(token)}' (position {p}): "
        f"{sal.target}('{display_token(token)}'){foil} = {value:.4g}"
        for p, token, value in zip(positions, sal.explained_tokens, np.asarray(sal.target_values, dtype=float))
    ]
    spans = []
    style = "border-radius: 3px; padding: 1px 1px"
    for column, token in enumerate(sal.tokens):
        if column in positions:
            spans.append(f'<span class="ecco-token ecco-explained" data-position="{column}" tabindex="0" '
                         f'style="{style}; border-bottom: 2px solid #888; cursor: pointer">'
                         f"{escape_token(token)}</span>")
        else:
            spans.append(f'<span class="ecco-token" data-position="{column}" style="{style}">'
                         f"{escape_token(token)}</span>")
    if signed:
        against = f"the foil '{display_token(sal.contrast_with)}'" if sal.contrast_with else "against it"
        legend = (f'<span style="color: rgb({SIGNED_COLORS["for"]}); font-weight: 600">\u25a0 for the token</span>'
                  f' \u00b7 <span style="color: rgb({SIGNED_COLORS["against"]}); font-weight: 600">'
                  f"\u25a0 {'for ' if sal.contrast_with else ''}{escape_token(against)}</span>")
    else:
        legend = (f'<span style="color: rgb({SHARE_COLOR}); font-weight: 600">\u25a0</span> share of '
                  f"{escape_token(quantity)}, darkest = the largest")
    payload = {
        "rows": np.round(np.nan_to_num(values), 4).tolist(), "positions": positions, "pinned": pinned,
        "labels": labels, "causal": bool(sal.causal),
        "evidence": SIGNED_COLORS["for"] if signed else SHARE_COLOR, "against": SIGNED_COLORS["against"],
    }
    # Inside <script>, "</" would end the block: JSON's \u escapes keep token text inert there.
    data = json.dumps(payload).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    # Without the script the markup is the same for the same result (the component redraws only on change).
    view_id = f"ecco-saliency-{uuid.uuid4().hex[:10]}"
    identity = f' id="{view_id}"' if script else ""
    runner = (f"<script>{SALIENCY_VIEW_SCRIPT}\neccoSaliencyView(document.getElementById({json.dumps(view_id)}), "
              "null);</script>") if script else ""
    method = f"{sal.method}, {'signed' if signed else 'unsigned'}"
    return (
        f'<div{identity} class="ecco-saliency-view" style="font-family: sans-serif; color: #31333f">'
        '<div style="display: flex; flex-wrap: wrap; gap: 4px 16px; font-size: 13px; margin-bottom: 6px">'
        '<span class="ecco-saliency-label" style="font-weight: 600"></span>'
        f'<span style="color: #6b6f76">{legend} \u00b7 {escape_token(method)} \u00b7 '
        "hover a token with a line under it, click to pin it</span></div>"
        '<div class="ecco-text" style="font-family: monospace; font-size: 16px; line-height: 2.2; '
        f'white-space: pre-wrap; word-break: break-word">{"".join(spans)}</div>'
        f'<script type="application/json">{data}</script>{runner}</div>'
    )


# ---- attention
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

    from ..layers import block_label

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
            hoverlabel={"bgcolor": "white", "bordercolor": "#31333f", "font": {"color": "#31333f", "size": 13}},
            margin={"l": 10, "r": 10, "t": 40, "b": 10},
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

    from ..layers import block_label

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
        hoverlabel={"bgcolor": "white", "bordercolor": "#31333f", "font": {"color": "#31333f", "size": 13}},
        margin={"l": 10, "r": 10, "t": 60, "b": 10}, plot_bgcolor="white",
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

    shown = [escape_token(_visible(token)) for token in tokens]
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


# ---- causal tracing (activation patching)
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
        token = escape_token(result.tokens[position])
        for layer in range(result.n_layers):
            lines = [
                f"restore {result.restored_label(site, layer)} at {position} {token!r}",
                f"effect {effects[position, layer]:.3f} ({result.metric} {values[position, layer]:.3f}; "
                f"clean {result.clean_value:.3f}, corrupted {result.corrupted_value:.3f})",
            ]
            if result.top_ids.shape[-1]:
                lines.append("patched run's top predictions:")
                lines += [
                    f"{rank + 1}. {escape_token(text)!r} ({probability:.3f})"
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
                         margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return figure
