"""Text on the page: user text shown literally, input errors shown as errors, a capture's tokens shaded."""

from __future__ import annotations

import re
from contextlib import contextmanager

import streamlit as st

import ecco_core as ec
from ecco_core.plots import token_html

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


def show_tokens(cap: ec.Capture, values=None, selected: int | None = None) -> None:
    """The capture's text with each token shaded by ``values`` (escaped HTML)."""
    st.html(token_html(cap.tokens, values, selected=selected, n_input=cap.n_input))
