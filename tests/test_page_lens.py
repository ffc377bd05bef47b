"""The Layer predictions page, through Streamlit's AppTest (the library is tested in test_lens.py)."""

import html

import numpy as np
import pytest

import dashboard
import ecco_core as ec
from ecco_core.text import bare_token
from apptest import charts, figure_array, page, run


def test_page_shows_rankings_parity_and_candidates(lm):
    app = run(page("pages/2_Layer_predictions.py"))
    assert app.title[0].value == "Layer predictions"
    assert any("last block = model output, max |logit diff|" in c.value for c in app.caption)
    heat = charts(app)[0]["data"][0]
    assert len(heat["text"]) == lm.n_layers and set(heat["text"][-1]) == {"1"}  # greedy: rank 1 at the output
    # Beside the heatmap, row for row: the lens's KL to the output and its top-1 agreement (#30).
    kl, agreement = charts(app)[0]["data"][2:]  # in the heatmap's figure, on its own y axis: level with its rows
    assert kl["y"] == agreement["y"] == heat["y"] == [f"block {i}" for i in range(lm.n_layers)]
    assert kl["yaxis"] == agreement["yaxis"] == "y" and (kl["xaxis"], agreement["xaxis"]) == ("x2", "x3")
    assert figure_array(agreement["x"])[-1] == 1 and abs(figure_array(kl["x"])[-1]) < 1e-6  # the output itself
    assert any(c.value.startswith("How far to trust each row") and "agree from block" in c.value for c in app.caption)
    token = app.selectbox(key="lens_token")
    assert len(token.options) == 20
    # Tokens read as the heatmap's columns name them, whitespace as every view shows it ("10: ↵"), not as Python
    # reprs ("10: '\\n'") (#31 item 16).
    assert token.options == [html.unescape(label) for label in heat["x"]] and "10: ↵" in token.options
    token.set_value(3)
    run(app)
    assert "by block" in charts(app)[1]["layout"]["title"]["text"]

    app.text_area(key="watch_text").set_value("The keys to the cabinet")
    app.text_input(key="watch_words").set_value("is, are")
    run(app)
    suggested = app.get("button_group")[0]
    assert len(suggested.options) >= 3 and suggested.value == []  # the chips start unselected
    suggestions = ec.suggest_candidates(lm, "The keys to the cabinet", k=3)
    # A chip names its token as the candidates' column it becomes names it: "and" for " and", no quotes (#31 item 16).
    assert [chip.content for chip in suggested.proto.options] == [
        dashboard.literal(bare_token(token)) for token in suggestions.tokens]
    watch = charts(app)[2]["data"][0]
    assert watch["x"] == ["is", "are"] and len(watch["y"]) == lm.n_layers  # typed words stand on their own
    assert app.query_params["watch_words"] in ("is, are", ["is, are"])  # a copied link keeps them
    app.get("button_group")[0].set_value([int(suggestions.to_frame()["token_id"].iloc[0])])
    run(app)
    assert len(charts(app)[2]["data"][0]["x"]) == 3  # a clicked chip joins them


def test_page_explains_an_encoder_without_head():
    app = run(page("pages/2_Layer_predictions.py"))
    app.sidebar.selectbox[0].set_value(ec.DEFAULT_ENCODER)
    app.sidebar.button[0].click()
    run(app)
    assert any("no language-modelling head" in e.value for e in app.error)
    # In the sidebar's words (#31 item 15), not the library's "load a checkpoint with a head".
    assert [e.value for e in app.error] == [
        f"{ec.DEFAULT_ENCODER} has no language-modelling head (its checkpoint holds the encoder only), so there are "
        "no token predictions for the lens to rank: pick a causal model (the default, SmolLM2) or a masked one with "
        "its head in the sidebar's Model box and press Run."]


def test_a_copied_link_compares_the_same_text_candidates_and_token(lm):
    """The compare text, typed words, picked chips and selected token are in the link and come back from it."""
    app = run(page("pages/2_Layer_predictions.py"))
    app.selectbox(key="lens_token").set_value(3)
    app.text_area(key="watch_text").set_value("The keys to the cabinet")
    app.text_input(key="watch_words").set_value("is, are")
    run(app)
    chip = int(ec.suggest_candidates(lm, "The keys to the cabinet", k=3).to_frame()["token_id"].iloc[0])
    app.get("button_group")[0].set_value([chip])
    run(app)
    shown = [charts(app)[index] for index in range(4)]

    linked = page("pages/2_Layer_predictions.py")
    linked.query_params.update({key: value for key, value in app.query_params.items()})
    run(linked)
    assert linked.selectbox(key="lens_token").value == 3
    assert linked.text_area(key="watch_text").value == "The keys to the cabinet"
    assert linked.get("button_group")[0].value == [chip]
    assert [charts(linked)[index] for index in range(4)] == shown  # the same comparison, not the sidebar's text

    # Another capture starts from its own text, its first token and no chips.
    linked.sidebar.text_area(key="_text").set_value("The capital of France is")
    linked.sidebar.button[0].click()
    run(linked)
    assert linked.text_area(key="watch_text").value == "The capital of France is"
    assert linked.selectbox(key="lens_token").value == 0
    assert "watch_text" not in linked.query_params and "lens_token" not in linked.query_params


def test_a_link_written_before_keys_were_snake_case_opens_the_same_view():
    """#27: the page's URL parameters were spelled with hyphens (lens-token, watch-words); such a link still opens
    the same token and words, and the address bar then spells them as the widgets' keys."""
    app = page("pages/2_Layer_predictions.py")
    app.query_params.update({"lens-token": "3", "watch-words": "is, are"})
    run(app)
    assert app.selectbox(key="lens_token").value == 3 and app.text_input(key="watch_words").value == "is, are"
    assert app.query_params["lens_token"] in ("3", ["3"]) and "lens-token" not in app.query_params


@pytest.mark.browser
def test_the_probability_axes_read_as_probabilities_in_chromium(page, app_url):
    """As drawn: "1" on top, then 0.1, 0.01 ... 10⁻⁴ (not "100µ"), and no "2" above 1; a link's comparison."""
    from browser import assert_healthy, open_app, screenshot, wait_for_charts

    open_app(page, app_url, "Layer_predictions", **{"watch_text": "The keys to the cabinet", "watch_words": "is, zebra"})
    wait_for_charts(page, 4)
    assert_healthy(page)
    for chart in (1, 3):  # the token's line, the candidates' lines
        ticks = page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').nth(chart).evaluate(
            """plot => [...plot.querySelectorAll('.ytick text')]
                .map(text => [text.textContent, text.getBoundingClientRect().top])
                .sort((a, b) => a[1] - b[1]).map(([text]) => text)""")
        decimals = {"1": 0, "0.1": -1, "0.01": -2, "0.001": -3}
        powers = [decimals[text] if text in decimals else
                  -int(text.removeprefix("10⁻").translate(str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")))
                  for text in ticks]
        assert powers[0] == 0 and len(set(np.diff(powers))) == 1 and powers[1] < 0, ticks  # 1 on top, every step
        assert all(text in ("1", "0.1", "0.01", "0.001") or (text.startswith("10⁻") and power < -3)
                   for text, power in zip(ticks, powers)), ticks
    screenshot(page, "2_Layer_predictions_axes")


def test_input_errors_are_said_in_the_words_of_the_pages_controls():
    app = page("pages/2_Layer_predictions.py")
    app.query_params.update({"text": "Hi", "new": "0"})
    run(app)
    assert [error.value for error in app.error] == [
        "The prompt is one token and Max new tokens is 0: there is no next token to rank; give a longer prompt or "
        "some new tokens"]
    app = run(page("pages/2_Layer_predictions.py"))
    app.text_area(key="watch_text").set_value(" ")
    app.text_input(key="watch_words").set_value("is")
    run(app)
    assert [error.value for error in app.error] == [
        "Text is empty: type the text whose next token the candidates compete for."]
