"""Token text as every view shows it: whitespace made visible, and escaped wherever HTML is read.

The bottom floor of everything that shows tokens: figures (:mod:`ecco_core.plots`),
result tables (``to_frame``) and the dashboard take their token text from here.
All token text that reaches HTML goes through :func:`escape_token`, and every
other text a figure shows (titles, axis titles, names in hover labels) through
:func:`escape_text`: Plotly reads a subset of HTML there (``<b>``, ``<br>``),
so a token ``"<br>"`` would otherwise break a title in two.
"""

from __future__ import annotations

import html

from ._checks import whole


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


def quoted_token(token: str) -> str:
    """A token named in running text (a caption, a header, a note): :func:`display_token` in quotes.

    Quoted as Python quotes a string, so a token holding a quote stays
    unambiguous (``"'s"``, not ``''s'``); whitespace shows as the views show
    it. Not escaped: HTML goes through :func:`escape_text`.

    >>> print(quoted_token(" Paris"), quoted_token(" "), quoted_token("\\n"), quoted_token("'s"))
    ' Paris' '␣' '↵' "'s"
    """
    return repr(display_token(token))


def quoted_tokens(tokens) -> str:
    """Several tokens named in running text, as a list: ``['␣', '1', '5']`` (:func:`quoted_token` each)."""
    return "[" + ", ".join(quoted_token(token) for token in tokens) + "]"


def escape_quoted(token: str) -> str:
    """:func:`quoted_token` for Plotly's hover labels: ``<``, ``>`` and ``&`` escaped, the quotes kept (Plotly draws
    them as text), so ``"'s"`` reads as it is written rather than as ``''s'``."""
    return html.escape(quoted_token(token), quote=False)


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
    shown = bare_token(token)
    return html.escape(shown if len(shown) <= max_chars else shown[: max_chars - 1] + "\u2026", quote=True)


def position_labels(tokens) -> list[str]:
    """Unique, readable labels of token positions: ``"3: Paris"``, ``"4: ↵"``; plain text, for widgets and tables.

    A word's leading space is dropped (the position already separates it);
    whitespace tokens show as :func:`display_token` marks.
    """
    return [position_text(position, token) for position, token in enumerate(tokens)]


def axis_labels(tokens) -> list[str]:
    """:func:`position_labels`, escaped: Plotly's axis labels (it merges equal category labels)."""
    return [escape_text(label) for label in position_labels(tokens)]


def bare_token(token: str) -> str:
    """A token named among others (a column, a chip): :func:`display_token` without a word's leading space.

    >>> bare_token(" Paris"), bare_token(" "), bare_token("\\n")
    ('Paris', '␣', '↵')
    """
    shown = display_token(token)
    return shown.strip(" ") or shown


def position_text(position: int, token: str) -> str:
    """A :func:`position_labels` entry for ``token`` at ``position``: ``"3: Paris"``, ``"4: ↵"``; plain text."""
    return f"{position}: {bare_token(token)}"


def position_label(position: int, token: str) -> str:
    """One :func:`axis_labels` entry: ``"3: Paris"``, escaped."""
    return escape_text(position_text(position, token))


def stripped_token(token: str) -> str:
    """A token for a narrow axis label: stripped, or its spaces as visible marks when it is only spaces. Not escaped."""
    return token.strip() or token.replace(" ", "\u2423")
