"""The Causal tracing page: every control through AppTest, hover and click in real Chromium."""

import re

import pytest
from scipy import stats

import ecco_core as ec
from apptest import charts, figure_array, page, run
from ecco_core.capture import encode_prompt
from browser import (
    assert_healthy,
    click_heatmap_cell,
    clipped_text,
    download_csv,
    hover_heatmap_cell,
    open_app,
    screenshot,
    wait_for_charts,
    wait_for_run,
)

PAGE = "pages/6_Causal_tracing.py"


def _messages(app, kind: str) -> str:
    return " ".join(element.value for element in getattr(app, kind))


@pytest.fixture(scope="module")
def app(lm):
    """The page as a first visit sees it: the names example, exact beside approximate."""
    return run(page(PAGE), timeout=600)


def test_the_default_is_the_names_example_exact_beside_approximate(app, lm):
    assert app.title[0].value == "Causal tracing"
    assert app.text_input(key="trace_clean").value.endswith("John gave a drink to")
    figures = charts(app)
    assert len(figures) == 4  # residual, attention, FFN, and the exact-vs-approximate scatter
    residual = figures[0]["data"]
    effects = figure_array(residual[0]["z"])
    assert residual[0]["type"] == "heatmap" and effects.shape == (14, lm.n_layers)
    assert residual[0]["y"][9] == "9: John → Mary"  # the swapped name, as the corrupted run read it
    assert effects[9, 0] == pytest.approx(1, abs=0.05)  # restoring it early brings the answer back
    assert (effects[:9] == 0).all()  # before the swapped name nothing differs
    hover = residual[1]["hovertext"][9 * lm.n_layers]
    assert hover.startswith("restore block 0 at 9 ' John'") and "patched run's top predictions:<br>1. ' Mary'" in hover
    assert "Activation patching" in _messages(app, "markdown") and "Pearson r with the exact effects" in _messages(
        app, "caption")
    assert app.dataframe[0].value["site"].tolist() == ["residual", "attention", "ffn", "all"]
    # Beside the scatter (#30): per site, Pearson, Spearman and AtP*'s top-10 recall of the cells it draws.
    agreement = app.dataframe[0].value.set_index("site")
    points = {trace["name"]: (figure_array(trace["x"]), figure_array(trace["y"])) for trace in figures[3]["data"][:3]}
    for site, (exact, approximate) in zip(["residual", "attention", "ffn"], points.values()):
        assert agreement.loc[site, "pearson"] == pytest.approx(stats.pearsonr(exact, approximate)[0], abs=1e-6)
        assert agreement.loc[site, "spearman"] == pytest.approx(stats.spearmanr(exact, approximate)[0], abs=1e-6)
        assert agreement.loc[site, "recall_at_top"] == ec.trust.top_recall(exact, approximate, 10)
    assert any("share of the exact top 10 cells" in c.value for c in app.caption)
    assert [button.label for button in app.get("download_button")].count("CSV") == 2  # the map's, the agreement's
    assert not app.error and not [key for key in app.query_params if key.startswith("trace_")]  # all defaults


def test_every_control_of_the_page(app):
    # Method, metric (each option) and the comparison, on the cheap approximate method.
    app.radio(key="trace_method").set_value("approximate")
    run(app, timeout=600)
    assert "Attribution patching" in _messages(app, "markdown")
    assert "estimated to first order" in charts(app)[0]["data"][1]["hovertext"][0]
    app.toggle(key="trace_compare").set_value(False)
    run(app)
    assert len(charts(app)) == 3 and app.query_params["trace_compare"] in ("false", ["false"])
    for metric, shown in [("prob", "probability of the answer"), ("logprob", "log-probability of the answer"),
                          ("logit_diff", "logit of the answer minus logit of the foil"),
                          ("default", "logit of the answer minus logit of the foil")]:
        app.selectbox(key="trace_metric").set_value(metric)
        run(app)
        assert f"metric: {shown}" in _messages(app, "markdown"), metric

    # A window with the approximate method is refused; with the exact one the comparison says why it is off.
    app.slider(key="trace_window").set_value(3)
    run(app)
    assert _messages(app, "error") == ("Approximate (attribution patching) estimates one block at a time: set "
                                       "Blocks restored together to 1 (it is 3), or pick Exact (activation patching)")
    app.radio(key="trace_method").set_value("exact")
    app.toggle(key="trace_compare").set_value(True)
    run(app, timeout=600)
    assert not app.error and "set the blocks restored together to 1" in _messages(app, "caption")
    hover = charts(app)[2]["data"][1]["hovertext"][0]
    assert hover.startswith("restore block 0 FFN to block 1 FFN at 0")
    app.slider(key="trace_window").set_value(1)
    app.radio(key="trace_method").set_value("approximate")
    app.toggle(key="trace_compare").set_value(False)

    # Bad input is a message naming it; each case is then put right.
    corrupted = app.text_input(key="trace_corrupted").value
    for changes, message in [
        ({"trace_corrupted": corrupted + " her"}, "the clean prompt is 14 tokens, the corrupted prompt 15"),
        ({"trace_corrupted": corrupted, "trace_foil": " Mary"}, "are the same token"),
        ({"trace_foil": "", "trace_metric": "logit_diff"}, "needs a foil"),
        ({"trace_foil": "   "}, "needs a foil"),
        ({"trace_metric": "default", "trace_answer": ""}, "answer is empty"),
    ]:
        for key, value in changes.items():
            (app.selectbox if key == "trace_metric" else app.text_input)(key=key).set_value(value)
        run(app)
        assert message in _messages(app, "error"), message
    app.text_input(key="trace_answer").set_value("Mary")

    # Noise on chosen tokens: nothing picked yet, then one token, its scale and seed.
    app.radio(key="trace_corruption").set_value("noise")
    run(app)
    assert "Pick the tokens to corrupt" in _messages(app, "info")
    noise = app.multiselect(key="trace_noise")
    assert len(noise.options) == 14 and noise.options[9].endswith("9:  John")
    noise.set_value(["1", "3"])
    app.number_input(key="trace_scale").set_value(5.0)
    app.number_input(key="trace_seed").set_value(2)
    run(app)
    assert "Gaussian noise (5 x the embeddings' std, seed 2) on positions 1 ' Mary', 3 ' John'" in _messages(
        app, "markdown")
    assert charts(app)[0]["data"][0]["y"][1] == "1: Mary*"
    assert app.query_params["trace_noise"] == ["1", "3"] and app.query_params["trace_seed"] in ("2", ["2"])
    # Meng et al.'s average over noise draws (#30): a pinned cell shows each draw's effect beside the average.
    app.number_input(key="trace_samples").set_value(2)
    app.session_state["trace_pinned"] = "residual,5,12"
    run(app)
    assert "seeds 2 to 3, averaged) on positions 1 ' Mary', 3 ' John'" in _messages(app, "markdown")
    assert re.search(r"Under 2 noise draws \(seeds 2 to 3\), each alone, this cell's effect is -?[\d.]+ ± [\d.]+, "
                     r"from -?[\d.]+ to -?[\d.]+; the map shows -?[\d.]+ \(the average of these 2 draws\)\.",
                     _messages(app, "caption"))
    assert app.query_params["trace_samples"] in ("2", ["2"])
    app.number_input(key="trace_samples").set_value(1)
    app.session_state["trace_pinned"] = ""

    # The fact example fills every field; the clean prompt can be typed.
    app.selectbox(key="trace_example").set_value("fact")
    run(app)
    assert app.text_input(key="trace_answer").value == "Paris" and app.multiselect(key="trace_noise").value == [
        "0", "1", "2", "3"]
    assert "on positions 0 'The', 1 ' E', 2 'iffel', 3 ' Tower'" in _messages(app, "markdown")
    app.text_input(key="trace_clean").set_value("The Colosseum is located in the city of")
    run(app)
    assert not app.error and "'The', 1 ' Col'" in _messages(app, "markdown")
    app.selectbox(key="trace_example").set_value("names")
    run(app)
    assert app.radio(key="trace_corruption").value == "prompt" and not app.error


def test_a_prompt_over_the_deployments_limit_is_refused_in_a_line(lm):
    """Bounded as the sidebar's prompt is (settings.MAX_PROMPT_TOKENS): not a wall of 1,000 tokens in red."""
    from dashboard import settings

    long = ("The keys to the cabinet are on the table. " * 120)[:5000]
    n_tokens = len(encode_prompt(lm, long))
    assert n_tokens > settings.MAX_PROMPT_TOKENS
    app = page(PAGE)
    app.query_params.update({"trace_clean": long, "trace_method": "approximate", "trace_compare": "false"})
    run(app)
    assert _messages(app, "error") == (
        f"Clean prompt is {n_tokens} tokens; this deployment allows at most {settings.MAX_PROMPT_TOKENS} (raise it "
        "with the environment variable ECCO_MAX_PROMPT_TOKENS)")
    assert not charts(app)
    app.radio(key="trace_corruption").set_value("noise")  # no token list of it to pick from either
    run(app)
    assert app.multiselect(key="trace_noise").options == []
    app.text_input(key="trace_clean").set_value("The Eiffel Tower is located in the city of")
    app.radio(key="trace_corruption").set_value("prompt")
    run(app)
    app.text_input(key="trace_corrupted").set_value(long * 4)  # refused by its length, before it is tokenised
    run(app)
    assert _messages(app, "error").startswith(f"Corrupted prompt is {len(long) * 4} characters; this deployment "
                                              f"allows at most {32 * settings.MAX_PROMPT_TOKENS}")


def test_one_noise_draw_shows_how_lucky_it_is_at_the_pinned_cell(lm):
    """Exact patching under one noise draw: the pinned cell's effect under 10 draws alone, the map's among them."""
    app = page(PAGE)
    app.query_params.update({"trace_clean": "The capital of France is", "trace_corruption": "noise",
                             "trace_noise": ["3"], "trace_answer": "Paris", "trace_foil": "",
                             "trace_compare": "false", "trace_pinned": "residual,3,3"})
    run(app, timeout=600)
    assert not app.error
    # The draws themselves are checked against whole single-draw runs in test_patching.py; here, that the map's
    # value is the pinned cell's and lies among them.
    effect = re.search(r"\*\*Pinned:\*\* restore block 3 at 3 ' France': effect \*\*(-?[\d.]+)\*\*",
                       _messages(app, "markdown")).group(1)
    caption = next(c.value for c in app.caption if c.value.startswith("Under 10 noise draws"))
    numbers = re.fullmatch(r"Under 10 noise draws \(seeds 0 to 9\), each alone, this cell's effect is (-?[\d.]+) ± "
                           r"([\d.]+), from (-?[\d.]+) to (-?[\d.]+); the map shows (-?[\d.]+) \(seed 0 alone\)\."
                           r"( One draw is not enough here: average more\.)?", caption)
    mean, sd, low, high, shown = (float(number) for number in numbers.groups()[:5])
    assert shown == float(effect) and low <= shown <= high and low <= mean <= high
    assert bool(numbers.group(6)) == (sd > 0.1)


def test_a_pinned_cell_comes_back_from_a_link(lm):
    app = page(PAGE)
    app.query_params.update({"trace_method": "approximate", "trace_compare": "false", "trace_pinned": "ffn,13,20"})
    run(app)
    assert "**Pinned:** restore block 20 FFN at 13 ' to': effect" in _messages(app, "markdown")
    assert charts(app)[2]["layout"]["shapes"][0]["x0"] == 19.5  # the FFN panel outlines it


def test_a_shared_link_reopens_the_same_view(lm):
    app = page(PAGE)
    app.query_params.update({"trace_example": "fact", "trace_clean": "The Eiffel Tower is located in the city of",
                             "trace_corruption": "noise", "trace_noise": ["2", "3"], "trace_answer": "Paris",
                             "trace_foil": "", "trace_method": "approximate", "trace_compare": "false"})
    run(app)
    assert app.multiselect(key="trace_noise").value == ["2", "3"] and app.radio(key="trace_method").value == "approximate"
    assert "on positions 2 'iffel', 3 ' Tower'" in _messages(app, "markdown")


# ------------------------------------------------------------------ browser
@pytest.mark.browser
def test_hovering_a_cell_shows_the_patched_runs_top_predictions_and_a_click_pins_it(page, app_url):
    open_app(page, app_url, "Causal_tracing")
    assert_healthy(page)
    wait_for_charts(page, 4)
    tooltip = hover_heatmap_cell(page, 0, row=9, col=0)
    assert "restore block 0 at 9 ' John'" in tooltip and "1. ' Mary'" in tooltip, tooltip
    frame = download_csv(page, "CSV")
    cell = frame[(frame["site"] == "residual") & (frame["block"] == 0) & (frame["position"] == 9)].iloc[0]
    assert f"effect {cell['effect']:.3f}" in tooltip

    click_heatmap_cell(page, 2, row=13, col=20)  # the FFN panel
    assert_healthy(page)
    pinned = page.locator('[data-testid="stMarkdownContainer"] p', has_text="Pinned:").inner_text()
    assert pinned.startswith("Pinned: restore block 20 FFN at 13 ' to': effect"), pinned
    outline = page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').nth(2).evaluate(
        "plot => plot.layout.shapes.map(shape => [shape.x0, shape.y0, shape.line.color])")
    assert outline == [[19.5, 12.5, "#ff4b4b"]]
    screenshot(page, "causal_tracing")

    # The pin is in the link: opened again, the same cell is pinned.
    assert "trace_pinned=ffn%2C13%2C20" in page.url
    page.goto(page.url, wait_until="commit")
    wait_for_charts(page, 4)
    assert page.locator('[data-testid="stMarkdownContainer"] p', has_text="Pinned:").inner_text() == pinned


@pytest.mark.browser
def test_new_work_takes_the_place_of_the_earlier_charts_and_every_control_reads_in_full(page, app_url):
    """While a long run shows its progress, no chart of the earlier settings stays on the page below it."""
    open_app(page, app_url, "Causal_tracing")
    wait_for_charts(page, 4)
    assert clipped_text(page) == []  # the Metric select's long choices among them
    page.locator('[data-testid="stMain"]').get_by_role("combobox", name="Metric", exact=True).click()
    page.get_by_role("option", name="probability of the answer", exact=True).click()
    page.get_by_text("Activation patching: estimated at").wait_for()
    assert page.locator('[data-testid="stPlotlyChart"]').count() == 0
    screenshot(page, "causal_tracing_new_work")
    page.locator('[data-testid="stMain"]').get_by_role("button", name="Stop", exact=True).click()
    page.get_by_text("Activation patching: stopped.").wait_for()
    wait_for_run(page)
    assert page.locator('[data-testid="stPlotlyChart"]').count() == 0
    page.locator('[data-testid="stMain"]').get_by_role("combobox", name="Example", exact=True).click()
    page.get_by_role("option", name="Fact: where is the Eiffel Tower? (noise on the subject)", exact=True).click()
    # The example's controls are drawn above its work: read them while it runs, then stop it (its result is not
    # what this test reads).
    page.get_by_text("Activation patching: estimated at").wait_for()
    chips = page.locator('[data-testid="stMultiSelect"] [data-tag]')
    chips.nth(3).wait_for()  # the status box can be drawn a moment before the example's chips
    assert chips.count() == 4
    assert clipped_text(page) == []  # the chips of the tokens to corrupt too
    page.locator('[data-testid="stMain"]').get_by_role("button", name="Stop", exact=True).click()
    page.get_by_text("Activation patching: stopped.").wait_for()
    wait_for_run(page)
