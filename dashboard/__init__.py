"""Streamlit-only helpers shared by every page: cached loading, the sidebar, errors, links.

Every page starts with ``lm, cap = dashboard.sidebar()``. The model is one
object shared by all sessions (``st.cache_resource``); captures are cached per
(model, text, settings), and analyses per their settings, once for all
sessions within byte budgets (:func:`cached_analysis`, :func:`long_work`), so
moving between pages recomputes nothing. What is on screen lives in the URL (``st.query_params``),
so a copied link reproduces the view; a page keeps its own widgets there with
:func:`page_param`. Limits for a shared deployment live in :mod:`dashboard.settings`.
"""

from __future__ import annotations

import json
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import streamlit as st
from streamlit.logger import get_logger
from streamlit.runtime.scriptrunner import get_script_run_ctx

import ecco_core as ec
from ecco_core.tokens import encode_answer, encode_prompt
from ecco_core.plots import saliency_view_html, token_html
from ecco_core.plots.views import VIEWS, view_script

from . import backend
from . import settings as limits
from .long_work import cached_analysis, duration, long_work, run_button
from .shared_cache import SharedCache

OTHER_MODEL = "Other (folder or hub name)…"
# Each continues with a word for its model (checked greedily in tests/test_app.py): SmolLM2 writes a year as
# ' ' + digits, so "... born in the year" opened every view on a token that is a space.
DEFAULT_PROMPTS = {
    ec.DEFAULT_MODEL: "Romeo and Juliet was written by",
    ec.DEFAULT_ENCODER: "The keys to the cabinet are on the table.",
}
_DEFAULTS = {"model": ec.DEFAULT_MODEL, "text": DEFAULT_PROMPTS[ec.DEFAULT_MODEL], "new": 20, "answer": ""}
_LOGGER = get_logger(__name__)
# Streamlit's Plotly chart code, one 4.7 MB file that its frontend fetches on the first chart.
_PLOTLY_CHUNK = next((Path(st.__file__).parent / "static" / "static" / "js").glob("PlotlyChart.*.js"), None)


@st.cache_resource(max_entries=3, show_spinner=False)
def cached_model(name: str) -> ec.LM:
    """The one shared model object for ``name``; never mutated by any page.

    Only models this deployment allows (``settings.ALLOWED_MODELS``) are loaded;
    others are refused before any file is looked at.
    """
    return ec.load(limits.check_model(name))


def preload_model() -> None:
    """Load ``settings.PRELOAD_MODEL`` into the shared model cache; log the outcome, never raise.

    ``app.py`` runs this in a background thread as the server starts. A page that
    asks for the same model meanwhile waits for this load rather than starting
    another (``st.cache_resource`` computes each key once).
    """
    name = limits.PRELOAD_MODEL
    if not name:
        return
    started = time.perf_counter()
    try:
        cached_model(name)
    except Exception as error:  # noqa: BLE001 - whoever picks this model sees the error in the sidebar
        _LOGGER.warning("Ecco Explorer could not preload %s: %s", name, error)
        return
    _LOGGER.info("Ecco Explorer preloaded %s in %.1f s", name, time.perf_counter() - started)


class _CachedCapture:
    """``cached_capture(model_name, text, max_new_tokens, answer)``: the capture of ``text`` by the shared model.

    Within the deployment's limits (see ``settings``): the prompt, and the given
    answer, which counts against ``MAX_NEW_TOKENS`` as generated tokens would.
    One capture per key for all sessions, within ``settings.CAPTURE_CACHE_MB``.
    """

    def __init__(self):
        self.cache = SharedCache(limits.CAPTURE_CACHE_MB * 2**20, limits.CACHE_TTL_SECONDS)

    def __call__(self, model_name: str, text: str, max_new_tokens: int, answer: str, lm: ec.LM | None = None,
                 ) -> ec.Capture:
        """``lm``, when given, is the model as this session runs it (on NDIF); by default ``cached_model``'s."""
        where = backend.HERE if lm is None or not lm.backend.traced else lm.backend.where  # which NDIF, too
        return self.cache.get((model_name, text, max_new_tokens, answer, where),
                              lambda: self._capture(model_name, text, max_new_tokens, answer, lm))

    @staticmethod
    def _capture(model_name: str, text: str, max_new_tokens: int, answer: str, lm: ec.LM | None) -> ec.Capture:
        limits.enforce(max_new_tokens, "MAX_NEW_TOKENS", "max new tokens")
        limits.check_text_length(text, "MAX_PROMPT_TOKENS", "the prompt")  # before the model is loaded
        if answer:
            limits.check_text_length(answer, "MAX_NEW_TOKENS", "the given answer")
        lm = lm or cached_model(model_name)
        checked_prompt(lm, text)
        if answer:
            limits.enforce(len(encode_answer(lm, answer)), "MAX_NEW_TOKENS", "the given answer")
        return ec.capture(lm, text, max_new_tokens=max_new_tokens, answer=answer or None)

    def clear(self) -> None:
        self.cache.clear()


cached_capture = _CachedCapture()


def checked_prompt(lm: ec.LM, text: str, what: str = "the prompt") -> list[int]:
    """Token ids of ``text`` as a prompt of ``lm``, if it is within this deployment's ``MAX_PROMPT_TOKENS``.

    For a page's own prompt boxes, bounded as the sidebar's prompt is: a text
    too long to be within the limit is refused before it is tokenised. The
    ValueError names ``what`` ("the clean prompt") and the limit.
    """
    limits.check_text_length(text, "MAX_PROMPT_TOKENS", what)
    ids = encode_prompt(lm, text)
    limits.enforce(len(ids), "MAX_PROMPT_TOKENS", what)
    return ids


def capture_key(cap: ec.Capture) -> str:
    """A cheap, hashable name for a capture (model and run settings), for the settings of a cached analysis.

    Hashing the capture's arrays on every rerun would cost more than the
    analyses it saves; this names the same capture in a few bytes.
    """
    return json.dumps([cap.model_name, cap.settings.to_dict()], sort_keys=True)


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
    # The prompt is written even when empty: a link to an error run reopens that error, not an older prompt.
    st.query_params.update({key: str(value) for key, value in state.items() if value != "" or key == "text"})
    if not state.get("answer"):
        st.query_params.pop("answer", None)


# Everything Streamlit's Markdown (CommonMark, GFM, KaTeX, emoji and colour directives) could act on,
# except what is plain in running text: parentheses, quotes, periods, a colon before a space, an
# underscore inside a word (ECCO_MAX_NEW_TOKENS). Each is escaped with a backslash.
_MARKDOWN_INLINE = re.compile(r"[\\`*\[\]<>$~|&@#{}!]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])|:(?=\S)|(?<=www)\.")
# What starts a list, a heading underline or a numbered list at the start of a line.
_MARKDOWN_BLOCK = re.compile(r"^([ \t]*(?:\d{1,9})?)([-+=.)])", re.MULTILINE)
# GitHub's autolinks (a bare http://, https:// or www. address, an e-mail address) are found in the text
# after backslash escapes are resolved, so no escape stops them; an invisible word joiner does.
_AUTOLINK = re.compile(r"(?i)(?:https?|www)(?=[:.])|@")
_WORD_JOINER = "\u2060"


def literal(text: str) -> str:
    """``text`` escaped for Streamlit Markdown, so that it shows as typed: no link, formula, emphasis or emoji.

    Bare web and e-mail addresses get an invisible word joiner (U+2060) after
    ``http``, ``www`` or ``@``, the one thing that keeps Markdown from linking them.

    For user-supplied text (a model name, a prompt, an error that quotes them)
    inside ``st.error``, ``st.caption``, ``st.spinner`` and friends::

        st.error(dashboard.literal(str(error)))
    """
    unlinked = _AUTOLINK.sub(lambda match: match.group() + _WORD_JOINER, str(text))
    escaped = _MARKDOWN_INLINE.sub(lambda match: "\\" + match.group(), unlinked)
    return _MARKDOWN_BLOCK.sub(lambda match: match.group(1) + "\\" + match.group(2), escaped)


@contextmanager
def user_errors(where=st, *also):
    """Show input errors as ``st.error`` (in ``where`` and each of ``also``), their text literally.

    Input errors are what the library raises for bad input: ``ValueError``
    (an argument, a file's content, a limit) and ``FileNotFoundError`` (a
    model folder or file that is not there); beside them, a request NDIF
    could not answer (``ecco_core.backends.RemoteError``: unreachable, a
    refused key, a queue timeout), whose message says what to do. Anything
    else (a ``TypeError``, a ``RuntimeError``) is a bug and surfaces as one,
    with its traceback.
    """
    try:
        yield
    except (ValueError, FileNotFoundError, ec.backends.RemoteError) as error:
        for place in (where, *also):
            place.error(literal(str(error)))


def sidebar() -> tuple[ec.LM | None, ec.Capture | None]:
    """Draw the shared sidebar (model, prompt, Run) and return the model and its capture.

    Returns ``(None, None)`` when nothing could be captured; the error has
    been shown.
    """
    state = current_settings()
    _write_query_params(state)
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
            _write_query_params(state)
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
    _write_query_params(state)


_PAGE_VALUES = "_page_params"
_FOLLOWED = "_followed_sources"
_PAGE_DEFAULTS = "_page_param_defaults"


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
        old one gives way to ``default``, as with :func:`follow`. A link's value
        is kept on its first visit.

    Returns
    -------
    The current value.
    """
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


def show_tokens(cap: ec.Capture, values=None, selected: int | None = None) -> None:
    """The capture's text with each token shaded by ``values`` (escaped HTML)."""
    st.html(token_html(cap.tokens, values, selected=selected, n_input=cap.n_input))


# The interactive views (ecco_core.plots.views) reach a page by what each needs. The saliency and factor views
# are components (below): in the page itself, at their own height, and their inline SVG is not sanitised (st.html
# strips the factor view's sparklines); the saliency view also sends its pin back to Python. The head view builds
# its SVG in the browser and sends nothing back, so st.html runs it in the page at its own height.
def _view_component(view: str, trigger: str | None = None):
    """A component that shows ``data["html"]`` (a view's markup without its script) and runs the view's script
    on it; with ``trigger``, what the script reports comes back to Python as that trigger."""
    report = f', value => setTriggerValue("{trigger}", value)' if trigger else ""
    return st.components.v2.component(
        f"ecco_{view}_view",
        js=view_script(view) + f"""
export default function (component) {{
  const {{ data, parentElement, setTriggerValue }} = component;
  let host = parentElement.querySelector(":scope > .ecco-host");
  if (!host) {{
    host = document.createElement("div");
    host.className = "ecco-host";
    parentElement.appendChild(host);
  }}
  host.innerHTML = data.html;
  {VIEWS[view]}(host.firstElementChild{report});
}}
""",
        isolate_styles=False,  # not in a shadow root: the page's own look applies, as to the rest of the page
    )


_SALIENCY_VIEW = _view_component("saliency", trigger="pinned")
_FACTOR_VIEW = _view_component("factor")


def saliency_view(sal: ec.Saliency, position: int, *, signed: bool, key: str, on_pin) -> None:
    """The paper's Figure 3 in the page: hovering an explained token re-shades the text in the browser.

    Every row of ``sal`` travels to the browser once; hovering needs no rerun.
    Clicking a token pins it and calls ``on_pin(position)`` before the next
    run (a callback, so it may set widgets drawn above the view).
    """
    _SALIENCY_VIEW(
        key=key, data={"html": saliency_view_html(sal, position, signed=signed, script=False)},
        on_pinned_change=lambda: on_pin(int(st.session_state[key]["pinned"])),
    )


def factor_view(result: ec.Factors, cap: ec.Capture, *, key: str) -> None:
    """The paper's Figure 9 in the page: hovering a sparkline shows its factor alone on the text, in the browser."""
    _FACTOR_VIEW(key=key, data={"html": result.to_html(cap.tokens, cap.n_input, script=False)})


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
        if isinstance(custom, dict):  # a browser sends a typed array as {"0": row, "1": col}
            custom = [custom[key] for key in sorted(custom, key=int)]
        if custom is not None and len(custom) == 2:
            return int(custom[0]), int(custom[1])
    return None


def follow(key: str, value, source) -> None:
    """Keep the widget ``key`` in step with what it derives from: it shows ``value`` whenever ``source`` changes.

    Call it just before the widget, and give the widget the same ``key`` and
    no value of its own. Between changes of ``source`` (a new result, another
    capture, another range) the widget is the user's; when ``source`` changes,
    a choice made for the old one (a neuron of blocks no longer shown, a
    column of another text) gives way to ``value``. Instead of a widget key
    that embeds its source, which leaves one widget state behind per source::

        dashboard.follow("neuron_layer", int(strongest["block"]), source=result_settings)
        layer = st.number_input("Block", 0, n_layers - 1, key="neuron_layer")
    """
    sources = st.session_state.setdefault(_FOLLOWED, {})
    if key not in st.session_state or sources.get(key) != source:
        st.session_state[key] = value
    sources[key] = source


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
    columns = st.columns(3 if figure is not None else 2)
    columns[0].download_button(
        "CSV", lambda: table().to_csv(index=False), f"{stem}.csv", "text/csv", key=f"{stem}-csv", width="stretch",
        on_click="ignore",
    )
    columns[1].download_button(
        "JSON", lambda: table().to_json(orient="records", indent=1), f"{stem}.json", "application/json",
        key=f"{stem}-json", width="stretch", on_click="ignore",
    )
    if figure is not None:
        def page() -> str:
            if isinstance(figure, str):
                return (f'<!doctype html><html><head><meta charset="utf-8"><title>{stem}</title></head><body>'
                        f"{figure}</body></html>")
            return figure.to_html(include_plotlyjs=True, full_html=True)

        columns[2].download_button(
            "HTML", page, f"{stem}.html", "text/html", help="The figure as one file that works offline",
            key=f"{stem}-html", width="stretch", on_click="ignore",
        )
