"""The shared models and captures: one model object per name for every session, captures cached once for all.

The model is ``st.cache_resource`` (never mutated by any page); a capture is
held once per (model, text, settings) in a byte budget shared by all sessions
(``settings.CAPTURE_CACHE_MB``), so moving between pages recomputes nothing.
"""

from __future__ import annotations

import json
import time

import streamlit as st
from streamlit.logger import get_logger

import ecco_core as ec
from ecco_core.tokens import encode_answer, encode_prompt

from . import backend
from . import settings as limits
from .shared_cache import SharedCache

_LOGGER = get_logger(__name__)


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
        if lm is None or not lm.backend.traced:
            return self.cache.get((model_name, text, max_new_tokens, answer, backend.HERE),
                                  lambda: self._capture(model_name, text, max_new_tokens, answer, lm))
        # Kept bound to no session's key, so the cache never holds one; each session reads it under its own.
        cap = self.cache.get((model_name, text, max_new_tokens, answer, lm.backend.where),  # which NDIF, too
                             lambda: self._capture(model_name, text, max_new_tokens, answer, lm).bound_to(
                                 ec.backends.with_key(lm, "")))
        return cap.bound_to(lm)

    @staticmethod
    def _capture(model_name: str, text: str, max_new_tokens: int, answer: str, lm: ec.LM | None) -> ec.Capture:
        limits.enforce(max_new_tokens, "MAX_NEW_TOKENS", "Max new tokens")
        limits.check_text_length(text, "MAX_PROMPT_TOKENS", "The prompt")  # before the model is loaded
        if answer:
            limits.check_text_length(answer, "MAX_NEW_TOKENS", "The given answer")
        lm = lm or cached_model(model_name)
        checked_prompt(lm, text)
        if answer:
            limits.enforce(len(encode_answer(lm, answer)), "MAX_NEW_TOKENS", "The given answer")
        return ec.capture(lm, text, max_new_tokens=max_new_tokens, answer=answer or None)

    def clear(self) -> None:
        self.cache.clear()


cached_capture = _CachedCapture()


def checked_prompt(lm: ec.LM, text: str, what: str = "The prompt") -> list[int]:
    """Token ids of ``text`` as a prompt of ``lm``, if it is within this deployment's ``MAX_PROMPT_TOKENS``.

    For a page's own prompt boxes, bounded as the sidebar's prompt is: a text
    too long to be within the limit is refused before it is tokenised, an empty one
    before the model is asked. The ValueError starts with ``what`` (a sentence's start: "Clean prompt") and names the limit.
    """
    limits.check_text_length(text, "MAX_PROMPT_TOKENS", what)
    if isinstance(text, str) and not text.strip():  # in the words of the box, not the library's text=
        raise ValueError(f"{what[:1].upper()}{what[1:]} is empty or whitespace only: type the text to analyse")
    ids = encode_prompt(lm, text)
    limits.enforce(len(ids), "MAX_PROMPT_TOKENS", what)
    return ids


def capture_key(cap: ec.Capture) -> str:
    """A cheap, hashable name for a capture (model and run settings), for the settings of a cached analysis.

    Hashing the capture's arrays on every rerun would cost more than the
    analyses it saves; this names the same capture in a few bytes.
    """
    return json.dumps([cap.model_name, cap.settings.to_dict()], sort_keys=True)
