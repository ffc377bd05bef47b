"""Widgets that several pages draw alike: an example picker, clicks on a chart's cells that set other widgets,
and the downloads of a table and its figure."""

from __future__ import annotations

from typing import Callable

import streamlit as st

from .url import page_param


def example_picker(key: str, examples: dict[str, dict], labels: dict[str, str], *, where=st,
                   also: dict | None = None) -> dict:
    """The *Example* selectbox of a page with prompts of its own; picking an example fills the page's fields.

    Parameters
    ----------
    key : str
        The selectbox's widget key and URL parameter (:func:`page_param`).
    examples : dict of str to dict
        Each example's name, to the values of the fields it fills, by their widget keys.
    labels : dict of str to str
        Each example's name as the selectbox shows it.
    where : Streamlit container, optional
        Where the selectbox goes (a column).
    also : dict, optional
        More session values set on every pick (a choice made for the previous example, cleared).

    Returns
    -------
    The first example's values: the defaults of the fields (a link that leaves them out shows these).
    """

    def fill() -> None:  # a callback: it runs before the fields are drawn, so it may set them
        st.session_state.update(examples[st.session_state[key]])
        st.session_state.update(also or {})

    first = next(iter(examples))
    page_param(key, first, choices=examples)
    where.selectbox("Example", list(examples), format_func=labels.get, key=key, on_change=fill)
    return examples[first]


def clicked_cell(event) -> tuple[int, int] | None:
    """(row, column) of the cell clicked in a :func:`ecco_core.plots.heatmap`, or None."""
    points = getattr(getattr(event, "selection", None), "points", None) or []
    for point in points:
        custom = point.get("customdata")
        if isinstance(custom, dict):  # a browser sends a typed array as {"0": row, "1": col}
            custom = [custom[key] for key in sorted(custom, key=int)]
        if custom is not None and len(custom) == 2:
            return int(custom[0]), int(custom[1])
    return None


def on_cell_click(chart: str, update: Callable[[tuple[int, int]], dict]) -> Callable[[], None]:
    """The ``on_select`` callback that keeps widgets in step with clicks on the chart keyed ``chart``.

    ``update(cell)`` takes the clicked ``(row, column)`` (:func:`clicked_cell`)
    and returns the session values to set, usually the keys of the widgets the
    click picks. It runs before the next run of the script, so those widgets
    are drawn with the clicked values and stay the user's to change: a click
    sets them once, when it happens, never again on later reruns. One idiom
    for every page whose chart picks something::

        st.plotly_chart(figure, key="saliency_heatmap", selection_mode="points",
                        on_select=dashboard.on_cell_click(
                            "saliency_heatmap", lambda cell: {"saliency_token": int(sal.positions[cell[0]])}))

    ``update`` sees the figure that was clicked (the values of the run that drew it).
    """

    def take_click() -> None:
        cell = clicked_cell(st.session_state.get(chart))
        if cell is not None:
            st.session_state.update(update(cell))

    return take_click


def download_buttons(frame, stem: str, figure=None) -> None:
    """CSV and JSON of a result table, plus a self-contained HTML file of its figure (plotly.js inlined).

    Each file is made when its button is clicked: the HTML file alone is 4.7 MB,
    and made on every rerun it would be held in memory for every session.
    ``frame`` is a DataFrame, or a function that makes one, for a table too
    large to build on every rerun (a long prompt's attention: a million rows).
    ``figure`` is a Plotly figure, or the HTML of an interactive view (a
    string, saved as a page of its own). The labels name the formats only
    ("CSV", "JSON", "HTML"), so that they stay whole in a narrow column.
    """
    table = frame if callable(frame) else lambda: frame
    key = stem.replace("-", "_")  # a file name's hyphens, in a widget key's style
    columns = st.columns(3 if figure is not None else 2)
    columns[0].download_button(
        "CSV", lambda: table().to_csv(index=False), f"{stem}.csv", "text/csv", key=f"{key}_csv", width="stretch",
        on_click="ignore",
    )
    columns[1].download_button(
        "JSON", lambda: table().to_json(orient="records", indent=1), f"{stem}.json", "application/json",
        key=f"{key}_json", width="stretch", on_click="ignore",
    )
    if figure is not None:
        def page() -> str:
            if isinstance(figure, str):
                return (f'<!doctype html><html><head><meta charset="utf-8"><title>{stem}</title></head><body>'
                        f"{figure}</body></html>")
            return figure.to_html(include_plotlyjs=True, full_html=True)

        columns[2].download_button(
            "HTML", page, f"{stem}.html", "text/html", help="The figure as one file that works offline",
            key=f"{key}_html", width="stretch", on_click="ignore",
        )
