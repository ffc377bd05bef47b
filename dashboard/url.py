"""What is on screen lives in the URL (``st.query_params``), so that a copied link reproduces the view.

Two kinds of state: the run settings of the sidebar (model, prompt, new
tokens, given answer: :func:`current_settings`, :func:`write_settings`) and
each page's own widgets (:func:`page_param`).
"""

from __future__ import annotations

import streamlit as st

import ecco_core as ec

# Each continues with a word for its model (checked greedily in tests/test_app.py): SmolLM2 writes a year as
# ' ' + digits, so "... born in the year" opened every view on a token that is a space.
DEFAULT_PROMPTS = {
    ec.DEFAULT_MODEL: "Romeo and Juliet was written by",
    ec.DEFAULT_ENCODER: "The keys to the cabinet are on the table.",
}
_DEFAULTS = {"model": ec.DEFAULT_MODEL, "text": DEFAULT_PROMPTS[ec.DEFAULT_MODEL], "new": 20, "answer": ""}
_PAGE_VALUES = "_page_params"
_FOLLOWED = "_followed_sources"
_PAGE_DEFAULTS = "_page_param_defaults"


def current_settings() -> dict:
    """The run settings of this session: from the URL on first visit, then from the last Run."""
    if "settings" not in st.session_state:
        params = st.query_params
        state = dict(_DEFAULTS)
        state["model"] = params.get("model", state["model"])
        state["text"] = params.get("text", state["text"])
        state["answer"] = params.get("answer", state["answer"])
        try:
            state["new"] = int(params.get("new", state["new"]))
        except ValueError:
            pass
        st.session_state["settings"] = state
    return st.session_state["settings"]


def write_settings(state: dict) -> None:
    """Write the run settings ``state`` into the URL."""
    # The prompt is written even when empty: a link to an error run reopens that error, not an older prompt.
    st.query_params.update({key: str(value) for key, value in state.items() if value != "" or key == "text"})
    if not state.get("answer"):
        st.query_params.pop("answer", None)


def page_param(key: str, default, choices=None, source=None):
    """Keep a page widget's value in the URL, so that a copied link reopens the same view.

    Call it just before the widget, and give the widget the same ``key`` and no
    value of its own::

        dashboard.page_param("saliency_method", "grad_x_input", choices=METHODS)
        method = st.selectbox("Method", METHODS, key="saliency_method")

    The value is, in order: the widget's current value, this session's last
    value on this page (Streamlit forgets widgets of pages not on screen), the
    URL's ``?saliency_method=...``, ``default``. It is written back to the URL,
    or removed from it while it equals ``default``. A value left at its default
    follows the default when that changes (the number of factors of another
    text), as the URL, which leaves it out, does.

    Parameters
    ----------
    key : str
        The widget's key and the query parameter's name; make it unique to the
        page (prefix it with the page's name).
    default : str, int, float, bool, or a list or tuple of them
        Its type is the type read from the URL (a list or tuple is a repeated parameter).
    choices : collection, optional
        Allowed values; a URL value outside them (a stale or edited link) gives ``default``.
        A URL value is read as the choice it spells (``"3"`` is the choice ``3``).
    source : hashable, optional
        What the value derives from (a capture, a text), for a widget whose
        choices belong to it: when ``source`` changes, a value chosen for the
        old one gives way to ``default`` (a neuron of blocks no longer shown, a
        column of another text). A link's value is kept on its first visit.

    Returns
    -------
    The current value.
    """
    respell_old_link(key)
    remembered = st.session_state.setdefault(_PAGE_VALUES, {})
    sources = st.session_state.setdefault(_FOLLOWED, {})
    if source is not None:
        if key in sources and sources[key] != source:
            remembered.pop(key, None)
            st.session_state[key] = default
        sources[key] = source
    value = st.session_state.get(key)
    if value is None:
        value = remembered.get(key)
    if value is None:
        value = _from_url(key, default, choices)
    defaults = st.session_state.setdefault(_PAGE_DEFAULTS, {})
    left_at_default = key in defaults and value == defaults[key]
    if left_at_default or not _allowed(value, choices):  # not allowed: e.g. a token of an earlier text
        value = default
    # Set on every run, not only when missing: a widget drawn again after a run that skipped it (a run that
    # stopped at an error) keeps its state here but is drawn blank in the browser (its default, 1 for IG
    # steps) unless its value is sent again; the browser would then send that blank back on the next rerun.
    st.session_state[key] = value
    remembered[key], defaults[key] = value, default
    if value == default:
        st.query_params.pop(key, None)
    elif isinstance(value, (list, tuple)):
        st.query_params[key] = [str(item) for item in value]
    else:
        st.query_params[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return value


def respell_old_link(key: str) -> None:
    """Rename the URL parameter ``key`` from its old spelling, with hyphens, so that an old link opens the same view.

    Widget keys, and so the URL parameters of :func:`page_param`, are snake_case with the page's prefix
    (``saliency_method``, ``lens_token``, ``trace_clean``); until #27 the Layer predictions, Causal tracing and
    Circuits pages spelled theirs with hyphens (``lens-token``, ``trace-clean``, ``circuits-head``).
    """
    old = key.replace("_", "-")
    if old != key and old in st.query_params:
        values = st.query_params.get_all(old)
        st.query_params.pop(old)
        if key not in st.query_params:
            st.query_params[key] = values


def _allowed(value, choices) -> bool:
    if choices is None:
        return True
    return all(item in choices for item in value) if isinstance(value, (list, tuple)) else value in choices


def _from_url(key: str, default, choices=None):
    if isinstance(default, (list, tuple)):
        value = list(st.query_params.get_all(key)) or list(default)
        if choices is not None:  # "3" is the choice 3
            spelled = {str(choice): choice for choice in choices}
            value = [spelled.get(item, item) for item in value]
        value = type(default)(value)  # a range slider's (first, last) is a tuple
        valid = _allowed(value, choices)
    else:
        raw = st.query_params.get(key)
        if raw is None:
            return default
        try:
            if isinstance(default, bool):
                value = {"true": True, "false": False}[raw.lower()]
            else:
                value = type(default)(raw)
        except (KeyError, ValueError):
            return default
        valid = _allowed(value, choices)
    return value if valid else default
