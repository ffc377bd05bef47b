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


# ------------------------------------------------ text Plotly would read as HTML (titles, axes, hovers)
MARKUP = "<b>x</b>"


def _shown_strings(figure) -> list[str]:
    """Every string a figure shows: titles, axis and tick labels, cell text, hover text, trace names."""
    found = []

    def walk(node, key=""):
        if isinstance(node, dict):
            for name, value in node.items():
                walk(value, name)
        elif isinstance(node, (list, tuple)) or hasattr(node, "tolist"):
            for item in (node.tolist() if hasattr(node, "tolist") else node):
                walk(item, key)
        elif isinstance(node, str) and key in {"text", "hovertext", "ticktext", "name", "x", "y"}:
            found.append(node)

    walk(figure.to_plotly_json())
    return found


def test_markup_in_tokens_and_titles_comes_out_literal_in_every_figure(lm):
    """A candidate or title "<b>x</b>" or "<br>" is shown as typed: Plotly gets it escaped, never as tags."""
    import numpy as np

    import ecco_core as ec

    watched = ec.watch(lm, "The keys to the cabinet", [MARKUP, "<br>"])
    figures = {
        "rankings": plots.rankings_figure(watched, title=f"Ranks of {MARKUP}"),
        "probability": plots.layer_probability_figure(watched, [0, 1], title=f"Probability of {MARKUP} and <br>"),
        "bars": plots.token_bars([1.0, -1.0], [MARKUP, "<br>"], title=MARKUP, y_title=MARKUP),
        "sparklines": plots.factor_sparklines(np.ones((2, 2)), [MARKUP, "<br>"], labels=[MARKUP, "<br>"]),
        "heatmap": plots.heatmap(np.ones((1, 1)), ["a"], ["b"], title=MARKUP, x_title=MARKUP, colorbar_title=MARKUP),
    }
    for name, figure in figures.items():
        shown = _shown_strings(figure)
        assert not [text for text in shown if MARKUP in text], name
        assert any("&lt;b&gt;x&lt;/b&gt;" in text for text in shown), name
    assert figures["probability"].layout.title.text == "Probability of &lt;b&gt;x&lt;/b&gt; and &lt;br&gt;"
    first, second = figures["probability"].data[:2]
    assert first.name.startswith("&lt;b&gt;x&lt;/b&gt;") and second.name.startswith("&lt;br&gt;")
    # Names in hover templates come from the trace (%{fullData.name}), never pasted in: "%{y}" stays text.
    assert all(MARKUP not in (trace.hovertemplate or "") for figure in figures.values() for trace in figure.data)
    assert plots.escape_text("<br>") == "&lt;br&gt;" and plots.escape_token("<br>") == "&lt;br&gt;"
    # Only references plotly.js decodes in titles and labels: named lt/gt/amp, numeric ones for quotes.
    assert plots.escape_text("""say "a" & 'b'""") == "say &#34;a&#34; &amp; &#39;b&#39;"


def test_next_token_heatmap_writes_escaped_candidates_where_they_fit(lm):
    import ecco_core as ec

    cap = ec.capture(lm, "Say <b>x</b> twice:", max_new_tokens=2)
    figure = plots.next_token_heatmap(cap)
    heat, markers = figure.data
    assert heat.z.shape == (5, cap.n_tokens)
    assert list(heat.x) == plots.axis_labels(cap.tokens) and list(heat.y) == ["#1", "#2", "#3", "#4", "#5"]
    # Row-major: rank #1 at every position first.
    assert list(markers.hovertext[:2]) == [
        f"after {plots.escape_token(cap.tokens[position])!r}: {plots.escape_token(cap.top_tokens[position][0])!r}, "
        f"p = {cap.top_probs[position, 0]:.3f}" for position in range(2)
    ]
    assert not [text for text in _shown_strings(figure) if "<" in text]  # every token's markup escaped
    # Candidates are written in the cells when 4 or more characters of 8 px fit, else left to the hover.
    chars = plots.NEXT_TOKEN_PLOT_PX // (plots.NEXT_TOKEN_CHAR_PX * cap.n_tokens)
    assert chars >= plots.NEXT_TOKEN_MIN_CHARS and heat.text[0][0] == plots.cell_token(cap.top_tokens[0][0], chars)
    assert plots.next_token_heatmap(cap, 2, plot_px=10).data[0].text is None
    assert plots.next_token_heatmap(cap, 2).data[0].z.shape == (2, cap.n_tokens)


def test_the_interactive_views_inline_their_package_files_and_start_the_same_way():
    """Each view's JavaScript and CSS are package data inlined into its HTML, and each starts by one call of its
    function on its root, after its numbers in a JSON block (the saliency view's page component calls it itself)."""
    import re
    from importlib import resources

    import numpy as np

    from ecco_core.plots.views import VIEWS

    files = resources.files("ecco_core.plots")
    views = {
        "factor": plots.factor_view_html(np.eye(2, 3), ["a", "<b>", "c"]),
        "head": plots.attention_head_view_html(np.full((2, 3, 3), 1 / 3), ["a", "<b>", "c"]),
    }
    for view, html in views.items():
        assert files.joinpath(f"{view}_view.css").read_text() in html
        assert files.joinpath(f"{view}_view.js").read_text() in html
        root = re.match(r'<div id="([^"]+)" class="ecco-[a-z]+-view">', html).group(1)
        assert re.search(rf'<script type="application/json">[^<]*</script><script>.*\n{VIEWS[view]}\(document\.'
                         rf'getElementById\("{root}"\)\);</script></div>$', html, re.DOTALL)
    assert plots.SALIENCY_VIEW_SCRIPT == files.joinpath("saliency_view.js").read_text()
    assert "function eccoSaliencyView(root, onPin)" in plots.SALIENCY_VIEW_SCRIPT
