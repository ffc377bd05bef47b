"""Streamlit-only helpers shared by every page: cached loading, the sidebar, errors.

Every page starts with ``lm, cap = dashboard.sidebar()``. The model is one
object shared by all sessions (``st.cache_resource``); captures are cached per
(model, text, settings) with ``st.cache_data``, so moving between pages
recomputes nothing. What is on screen lives in the URL (``st.query_params``),
so a copied link reproduces the view.
"""

from __future__ import annotations

from contextlib import contextmanager

import streamlit as st

import ecco_core as ec
from ecco_core.capture import encode_prompt
from ecco_core.plots import token_html

from . import settings as limits

OTHER_MODEL = "Other (folder or hub name)…"
DEFAULT_PROMPTS = {
    ec.DEFAULT_MODEL: "William Shakespeare was born in the year",
    ec.DEFAULT_ENCODER: "The keys to the cabinet are on the table.",
}
_DEFAULTS = {"model": ec.DEFAULT_MODEL, "text": DEFAULT_PROMPTS[ec.DEFAULT_MODEL], "new": 20, "answer": ""}


@st.cache_resource(max_entries=3, show_spinner=False)
def cached_model(name: str) -> ec.LM:
    """The one shared model object for ``name``; never mutated by any page."""
    return ec.load(name)


@st.cache_data(max_entries=limits.MAX_CACHED_CAPTURES, ttl=limits.CACHE_TTL_SECONDS, show_spinner=False)
def cached_capture(model_name: str, text: str, max_new_tokens: int, answer: str) -> ec.Capture:
    lm = cached_model(model_name)
    n_prompt = len(encode_prompt(lm, text))
    if n_prompt > limits.MAX_PROMPT_TOKENS:
        raise ValueError(
            f"the prompt is {n_prompt} tokens; this deployment allows at most {limits.MAX_PROMPT_TOKENS} "
            "(ECCO_MAX_PROMPT_TOKENS)"
        )
    return ec.capture(lm, text, max_new_tokens=max_new_tokens, answer=answer or None)


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


def _write_query_params(state: dict) -> None:
    st.query_params.update({key: str(value) for key, value in state.items() if value != ""})
    if not state.get("answer"):
        st.query_params.pop("answer", None)


@contextmanager
def user_errors(where=st):
    """Show bad input and failed analyses as ``st.error``, never as a traceback."""
    try:
        yield
    except (ValueError, TypeError, RuntimeError, OSError) as error:
        where.error(str(error))


def sidebar() -> tuple[ec.LM | None, ec.Capture | None]:
    """Draw the shared sidebar (model, prompt, Run) and return the model and its capture.

    Returns ``(None, None)`` when nothing could be captured; the error has
    been shown.
    """
    state = current_settings()
    _write_query_params(state)
    offline = ec.offline_models()
    choices = offline + [OTHER_MODEL]
    # Keyed widgets keep their identity across reruns; they are (re)filled from the
    # last submitted settings whenever Streamlit has dropped them (e.g. on a page switch).
    initial = {
        "_model_choice": state["model"] if state["model"] in choices else OTHER_MODEL,
        "_model_other": "" if state["model"] in choices else state["model"],
        "_text": state["text"],
        "_new": min(int(state["new"]), limits.MAX_NEW_TOKENS),
        "_answer": state["answer"],
    }
    for key, value in initial.items():
        st.session_state.setdefault(key, value)
    with st.sidebar.form("run"):
        st.markdown("### Model and text")
        st.selectbox("Model", choices, key="_model_choice",
                     help="The first entries ship inside PyPI packages and work offline.")
        st.text_input(
            "Folder or hub name", key="_model_other",
            help="Used when the model above is 'Other'. Supported families: "
            + ", ".join(ec.supported_model_types()),
        )
        st.text_area("Prompt", key="_text", height=120)
        st.number_input(
            "Max new tokens", min_value=0, max_value=limits.MAX_NEW_TOKENS, key="_new",
            help=f"0 analyses the text alone. At most {limits.MAX_NEW_TOKENS} here (ECCO_MAX_NEW_TOKENS).",
        )
        st.text_input(
            "Given answer (optional)", key="_answer",
            help="Analyse this continuation instead of generating one; start it with a space "
            "to continue a sentence (' 1564').",
        )
        if st.form_submit_button("Run", type="primary", width="stretch"):
            picked = st.session_state["_model_choice"]
            model = st.session_state["_model_other"].strip() if picked == OTHER_MODEL else picked
            state.update(
                model=model, text=st.session_state["_text"], new=int(st.session_state["_new"]),
                answer=st.session_state["_answer"],
            )
            _write_query_params(state)

    new_tokens = 0 if state["answer"] else state["new"]
    with user_errors(st.sidebar):
        with st.spinner(f"Loading {state['model']}…"):
            lm = cached_model(state["model"])
        if not lm.is_causal:
            new_tokens = 0
        with st.spinner("Running the model…"):
            cap = cached_capture(state["model"], state["text"], new_tokens, state["answer"] if lm.is_causal else "")
        st.sidebar.caption(
            f"{lm.name}: {lm.spec.name}, {lm.n_layers} layers, d_model {lm.d_model}, d_ff {lm.d_ff}; "
            f"{cap.n_input} prompt + {cap.n_generated} generated tokens"
        )
        return lm, cap
    return None, None


def show_tokens(cap: ec.Capture, values=None, selected: int | None = None) -> None:
    """The capture's text with each token shaded by ``values`` (escaped HTML)."""
    st.html(token_html(cap.tokens, values, selected=selected, n_input=cap.n_input))


def require_capture(cap: ec.Capture | None) -> ec.Capture:
    """Stop the page with a hint when nothing has been captured."""
    if cap is None:
        st.info("Pick a model and a prompt in the sidebar, then press Run.")
        st.stop()
    return cap


def clicked_cell(event) -> tuple[int, int] | None:
    """(row, column) of the cell clicked in a :func:`ecco_core.plots.heatmap`, or None."""
    points = getattr(getattr(event, "selection", None), "points", None) or []
    for point in points:
        custom = point.get("customdata")
        if custom is not None and len(custom) == 2:
            return int(custom[0]), int(custom[1])
    return None


def download_buttons(frame, stem: str, figure=None) -> None:
    """CSV and JSON of a result table, plus a self-contained HTML file of its figure (plotly.js inlined)."""
    columns = st.columns(3 if figure is not None else 2)
    columns[0].download_button(
        "CSV", frame.to_csv(index=False), f"{stem}.csv", "text/csv", key=f"{stem}-csv", width="stretch"
    )
    columns[1].download_button(
        "JSON", frame.to_json(orient="records", indent=1), f"{stem}.json", "application/json",
        key=f"{stem}-json", width="stretch",
    )
    if figure is not None:
        columns[2].download_button(
            "Figure (HTML, works offline)", figure.to_html(include_plotlyjs=True, full_html=True),
            f"{stem}.html", "text/html", key=f"{stem}-html", width="stretch",
        )
