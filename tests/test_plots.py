"""The shared display rules for token text (every view shows tokens through them)."""

import pytest

from ecco_core import plots


@pytest.mark.parametrize(
    ("token", "text", "table"),
    [
        (" Paris", " Paris", "\u2423Paris"),
        (" ", "\u2423", "\u2423"),
        ("  ", "\u2423\u2423", "\u2423\u2423"),
        ("\n", "\u21b5", "\u21b5"),
        (".\n\n", ".\u21b5\u21b5", ".\u21b5\u21b5"),
        ("\t", "\u21e5", "\u21e5"),
        ("", "\u2205", "\u2205"),
    ],
)
def test_whitespace_is_visible(token, text, table):
    assert plots.display_token(token) == text
    assert plots.display_token(token, spaces=True) == table


def test_labels_and_html_are_escaped_and_show_whitespace():
    assert plots.escape_token("<b>\n") == "&lt;b&gt;\u21b5"
    assert plots.axis_labels(["<i>", " Paris", " ", "\n"]) == ["0: &lt;i&gt;", "1: Paris", "2: \u2423", "3: \u21b5"]
    html = plots.token_html(["a", " ", "\n", "<s>"])
    assert "\u2423" in html and "\u21b5" in html and "&lt;s&gt;" in html and "<s>" not in html
