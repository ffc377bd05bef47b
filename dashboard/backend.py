"""Where the model runs: this machine or NDIF (#28), chosen in the sidebar, said under every result.

- The choice is ``?run_on=ndif`` in the URL (absent: this machine), so a copied
  link carries it. The NDIF API key never travels: it is typed into a password
  field and kept in this browser session's state only (never in the URL, a
  log, a download or a message), or it is the server's own ``NDIF_API_KEY``,
  which is never sent to the browser. A link with NDIF chosen opens asking for
  the key.
- The served models are read from NDIF (``NDIF_HOST`` or https://api.ndif.us);
  when it cannot be reached the sidebar says so and keeps the choice, the key
  and the settings.
- ``ECCO_NDIF=local`` makes this machine stand in for NDIF: the NDIF choice then
  runs every view through nnsight, each request serialised and deserialised as
  NDIF's server would (:func:`ecco_core.backends.simulated`), on the models
  this machine serves offline. The same code as the real NDIF path, with no
  network: what the app's tests use.
- Results are cached per place (:func:`place`): a result computed on one is
  never shown as computed on the other.
"""

from __future__ import annotations

import os

import streamlit as st

import ecco_core as ec
from ecco_core import backends

HERE, NDIF = "here", "ndif"
PLACES = {HERE: "this machine", NDIF: "NDIF"}
#: The sidebar's widget and URL parameter.
KEY = "run_on"
_API_KEY = "_ndif_key"  # the password field's widget key
_KEPT_KEY = "_ndif_key_kept"  # the key as typed, kept while pages change (Streamlit blanks a new page's widgets)
_UNREACHABLE = "_ndif_unreachable"  # this run found NDIF unreachable: what to say instead of running there
KEYS_URL = "https://login.ndif.us"


def simulated() -> bool:
    """True when this machine stands in for NDIF (``ECCO_NDIF=local``): the offline, serialised NDIF path."""
    return os.environ.get("ECCO_NDIF", "").strip().lower() == "local"


def chosen() -> str:
    """Where this session runs its models now: :data:`HERE` or :data:`NDIF`."""
    return st.session_state.get(KEY, HERE)


def place() -> str:
    """Where this session's results are computed, as part of every result's cache key: :data:`HERE`, or which NDIF
    (its host, or this machine standing in for it), so that no result is shown as computed where it was not."""
    if chosen() == HERE:
        return HERE
    return "ndif simulated here" if simulated() else f"ndif at {os.environ.get('NDIF_HOST') or backends.DEFAULT_NDIF_HOST}"


def api_key() -> str | None:
    """The key typed in this session, else None (the library then reads the server's ``NDIF_API_KEY``)."""
    return st.session_state.get(_KEPT_KEY) or None


def has_key() -> bool:
    """A key typed here or the server's own: asked for even when this machine stands in for NDIF (which checks none)."""
    return bool(api_key() or os.environ.get("NDIF_API_KEY"))


@st.cache_data(ttl=60, show_spinner=False, max_entries=4)
def served_models(host: str | None) -> list[str]:
    """NDIF's served models, read at most once a minute (a RemoteError, which is not cached, when unreachable)."""
    return backends.served_models(host)


def _keep_key() -> None:
    st.session_state[_KEPT_KEY] = st.session_state.get(_API_KEY, "").strip()


def choose(page_param) -> str:
    """Draw "Run on" (and, for NDIF, the key field) in the sidebar; return the place chosen.

    ``page_param`` is :func:`dashboard.page_param`, which keeps the choice in
    the URL and across pages.
    """
    page_param(KEY, HERE, choices=PLACES)
    # No help tooltip: its button would be named "Help for Run on", a second sidebar button whose name holds "Run".
    st.sidebar.radio("Run on", list(PLACES), format_func=PLACES.get, key=KEY, horizontal=True)
    if chosen() == NDIF:
        # Sent on every run, not only when it differs from the kept key: a widget drawn again on another page is
        # drawn blank in the browser unless its value is sent again (the field read empty on every other page).
        st.session_state[_API_KEY] = st.session_state.get(_KEPT_KEY, "")
        st.sidebar.text_input(
            "NDIF API key", type="password", key=_API_KEY, on_change=_keep_key,
            placeholder="set on the server" if os.environ.get("NDIF_API_KEY") else "",
            help=f"From {KEYS_URL}. Kept in this browser session only: never in the address bar, a download or "
            "a log." + (" Left empty, the server's own key (NDIF_API_KEY) is used." if os.environ.get(
                "NDIF_API_KEY") else ""),
        )
    return chosen()


def model_choices(offline: list[str], current: str) -> list[str]:
    """The models the sidebar offers: this machine's offline ones, or NDIF's served ones.

    NDIF's list is read from NDIF; when it cannot be read, the model already
    chosen is offered and :func:`load` says why nothing runs (the settings
    and the key stay as they are).
    """
    st.session_state.pop(_UNREACHABLE, None)
    if chosen() == HERE or simulated():
        return offline
    try:
        return served_models(os.environ.get("NDIF_HOST")) or [current]
    except backends.RemoteError as error:  # said where the run would go (load), once
        st.session_state[_UNREACHABLE] = f"{error}. Your settings and key are kept: choose Run on: this machine meanwhile"
        return [current]


def load(name: str, cached_model):
    """The model ``name`` run where this session chose: ``cached_model(name)`` here, or on NDIF.

    On NDIF only the structure is loaded (shared by every session); each
    session's own key goes with its requests. Raises a ValueError asking for
    the key when there is none.
    """
    if chosen() == HERE:
        return cached_model(name)
    if _UNREACHABLE in st.session_state:
        raise ValueError(st.session_state[_UNREACHABLE])
    if not has_key():
        raise ValueError(f"Running on NDIF needs your NDIF API key: type it in the sidebar (keys from {KEYS_URL}), "
                         "or choose Run on: this machine")
    served = _simulated(name) if simulated() else _on_ndif(name, os.environ.get("NDIF_HOST"))
    return backends.with_key(served, api_key())


@st.cache_resource(max_entries=3, show_spinner=False)
def _on_ndif(name: str, host: str | None) -> ec.LM:
    return ec.load(name, backend="ndif", host=host)


@st.cache_resource(max_entries=3, show_spinner=False)
def _simulated(name: str) -> ec.LM:
    from .models import cached_model  # the one shared copy of this machine's model serves the simulated NDIF

    return backends.simulated(cached_model(name))


def where(lm: ec.LM, *, analysed_here: bool = False) -> str:
    """Where a result on this page was computed, in a short line: under each page's results."""
    if not lm.backend.traced:
        return "Computed on this machine."
    ran = f"NDIF ({lm.name})" if lm.backend.remote is True else f"this machine standing in for NDIF ({lm.name})"
    return f"Captured on {ran}; analysed on this machine." if analysed_here else f"Computed on {ran}."


def computed_on(lm: ec.LM | None, *, analysed_here: bool = False) -> None:
    """Say under a page's result where it was computed (nothing before a model is loaded)."""
    if lm is not None:
        st.caption(where(lm, analysed_here=analysed_here))


def needs_this_machine(lm: ec.LM, what: str, why: str = "it runs the model here, which NDIF does not offer") -> bool:
    """True (and the page told why, in its words) when ``what`` cannot run where this session runs ``lm``;
    ``why`` says what it needs that NDIF does not give."""
    if not lm.backend.traced:
        return False
    st.info(f"{what}: on this machine only ({why}). Choose Run on: this machine in the sidebar to see it.")
    return True
