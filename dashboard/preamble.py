"""What every page starts with: :func:`page` (its tab, the shared sidebar, its title and caption).

The sidebar (model, prompt, Run) is drawn by :func:`sidebar`; :func:`require_capture` stops a page that has
nothing captured to show.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

import ecco_core as ec

from . import backend
from . import settings as limits
from .models import cached_capture, cached_model
from .text import literal, user_errors
from .url import current_settings, page_param, write_settings

OTHER_MODEL = "Other (folder or hub name)…"
# Streamlit's Plotly chart code, one 4.7 MB file that its frontend fetches on the first chart.
_PLOTLY_CHUNK = next((Path(st.__file__).parent / "static" / "static" / "js").glob("PlotlyChart.*.js"), None)


def sidebar() -> tuple[ec.LM | None, ec.Capture | None]:
    """Draw the shared sidebar (model, prompt, Run) and return the model and its capture.

    Returns ``(None, None)`` when nothing could be captured; the error has
    been shown.
    """
    state = current_settings()
    write_settings(state)
    backend.choose(page_param)
    choices = backend.model_choices(ec.offline_models(), state["model"]) + [OTHER_MODEL]
    # Streamlit makes new widgets, blank ones, when the page changes, even under the
    # same keys: refill them then (and on the first run) from the last submitted settings.
    initial = {
        "_model_choice": state["model"] if state["model"] in choices else OTHER_MODEL,
        "_model_other": "" if state["model"] in choices else state["model"],
        "_text": state["text"],
        "_new": min(max(int(state["new"]), 0), limits.MAX_NEW_TOKENS),
        "_answer": state["answer"],
    }
    page = get_script_run_ctx().page_script_hash
    refill = st.session_state.get("_sidebar_page") != page
    # A new model (from the URL or a Run) also resets both model widgets, so the name box
    # never keeps a stale name beside the picker.
    new_model = st.session_state.get("_sidebar_model") != state["model"]
    st.session_state.update(_sidebar_page=page, _sidebar_model=state["model"])
    for key, value in initial.items():
        if refill or key not in st.session_state or (new_model and key in ("_model_choice", "_model_other")):
            st.session_state[key] = value
    initial_model = state["model"]
    with st.sidebar.form("run"):
        st.markdown("### Model and text")
        st.selectbox("Model", choices, key="_model_choice",
                     help="The first entries ship inside PyPI packages and work offline." if backend.chosen() == backend.HERE
                     else "The models NDIF serves now.")
        st.text_input(
            "Folder or hub name", key="_model_other",
            help="A name typed here is used unless you also change the model above. Supported families: "
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
            "to continue a sentence (' William Shakespeare').",
        )
        if st.form_submit_button("Run", type="primary", width="stretch"):
            picked = st.session_state["_model_choice"]
            typed = st.session_state["_model_other"].strip()
            picker_changed = picked != initial["_model_choice"] and picked != OTHER_MODEL
            model = picked if picker_changed or not (typed or picked == OTHER_MODEL) else typed
            state.update(
                model=model, text=st.session_state["_text"], new=int(st.session_state["_new"]),
                answer=st.session_state["_answer"],
            )
            write_settings(state)
            if model != initial_model:
                # Refill the model widgets now: left to the next run, the refill would overwrite
                # whatever the user picks in that run (a switch back to the first model was lost).
                st.rerun()

    _prefetch_chart_code()
    new_tokens = 0 if state["answer"] else state["new"]
    with user_errors(st.sidebar, st):  # also in the main area, where the user is looking
        with st.spinner(f"Loading {literal(state['model'])}…"):
            lm = backend.load(state["model"], cached_model)
        if not lm.is_causal:
            new_tokens = 0
        queue = st.sidebar.empty()  # NDIF's word for where the request is, while it waits there
        with st.spinner("Running the model…" if not lm.backend.traced else "Running the model on NDIF…"), \
                ec.backends.watching(lambda status, waited: queue.caption(f"NDIF: {status.lower()} for {waited:.0f} s")):
            cap = cached_capture(state["model"], state["text"], new_tokens, state["answer"] if lm.is_causal else "",
                                 lm if lm.backend.traced else None)
        queue.empty()
        st.sidebar.caption(
            f"{literal(lm.name)}: {lm.spec.name}, {lm.n_layers} layers, d_model {lm.d_model}, d_ff {lm.d_ff}; "
            f"{cap.n_input} prompt + {cap.n_generated} generated tokens. "
            "The address bar holds this view: copy it to share it."
        )
        return lm, cap
    return None, None


def _prefetch_chart_code() -> None:
    """Have the browser load Streamlit's Plotly chart code while the model runs.

    Streamlit asks for it only when the first chart arrives, after the model has
    run, and loading it then delays every visit's first chart by about a second
    (``bench/app_start.py``). Missing from another Streamlit build, it is skipped.
    """
    if _PLOTLY_CHUNK is not None:
        st.sidebar.html(f'<script>import("./static/js/{_PLOTLY_CHUNK.name}")</script>', unsafe_allow_javascript=True)


def load_settings(model: str, text: str, new: int = 0, answer: str = "") -> None:
    """Put a run's settings into the sidebar, as if typed and Run pressed.

    Meant as a button callback (``st.button(..., on_click=load_settings, kwargs=...)``):
    callbacks run before the sidebar is drawn, so its widgets may still be set.
    """
    state = current_settings()
    state.update(model=model, text=text, new=int(new), answer=answer)
    offline = model in ec.offline_models()
    st.session_state.update(
        _model_choice=model if offline else OTHER_MODEL, _model_other="" if offline else model,
        _text=text, _new=min(max(int(new), 0), limits.MAX_NEW_TOKENS), _answer=answer,
    )
    write_settings(state)


def require_capture(cap: ec.Capture | None) -> ec.Capture:
    """Stop the page with a hint when nothing has been captured."""
    if cap is None:
        st.info("Pick a model and a prompt in the sidebar, then press Run.")
        st.stop()
    return cap


def page(title: str, caption: str | None = None, *, tab: str | None = None, needs_capture: bool = True,
         runs_here: str | None = None) -> tuple[ec.LM, ec.Capture | None]:
    """Start a page: its browser tab, the shared sidebar, its title and caption; the model and its capture.

    Every page begins with it, then draws its controls, one analysis, its charts and downloads::

        lm, cap = dashboard.page("Layer predictions", "Every block's output goes through ...")

    Parameters
    ----------
    title : str
        The page's title, and its browser tab's unless ``tab`` is given.
    caption : str, optional
        Markdown under the title: what the view shows.
    tab : str, optional
        The browser tab's title, where it differs from ``title``.
    needs_capture : bool
        False for a page with prompts of its own, which needs only the sidebar's model: ``cap`` may then
        be None (the sidebar's prompt could not be run).
    runs_here : str, optional
        For a view that runs only on this machine: what it is, in the page's words, said under the title
        when the session runs the model on NDIF (:func:`dashboard.backend.needs_this_machine`).
    Returns
    -------
    (lm, cap)
        The page stops before its title where there is no model (the sidebar shows the error) or, when
        ``needs_capture``, no capture (with a hint to press Run); after its title, where ``runs_here``
        cannot run where the model runs.
    """
    st.set_page_config(page_title=tab or title, layout="wide")
    lm, cap = sidebar()
    if needs_capture:
        cap = require_capture(cap)
    elif lm is None:
        st.stop()
    st.title(title)
    if runs_here and backend.needs_this_machine(lm, runs_here):
        st.stop()
    if caption:
        st.caption(caption)
    return lm, cap


def require_head(lm: ec.LM, reader: str) -> None:
    """Stop a view that reads the model's token predictions where the model has none (the bundled encoder), with
    an error that says what to pick in the sidebar; ``reader`` is what reads them, in the page's words ("the
    lens to rank")."""
    if not lm.has_head:
        st.error(f"{literal(lm.name)} has no language-modelling head (its checkpoint holds the encoder only), so "
                 f"there are no token predictions for {reader}: pick a causal model (the default, SmolLM2) or a "
                 "masked one with its head in the sidebar's Model box and press Run.")
        st.stop()
