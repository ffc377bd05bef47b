"""The real app in headless Chromium: every page, bad input, shareable links, downloads.

One server and one browser serve the whole test session (``tests/browser.py``);
each test is a fresh browser context, i.e. a new user. Screenshots of every
page land in ``artifacts/screenshots`` (git-ignored).
"""

import ast
import html
import re
import time
from pathlib import Path

import numpy as np
import pytest

from browser import (
    RUN_TIMEOUT_MS,
    EXCEPTION,
    PAGES,
    RUNNING,
    assert_healthy,
    chart_title,
    chart_traces,
    click_heatmap_cell,
    clipped_text,
    download,
    download_csv,
    errors,
    expected_saliency_shading,
    gaps_between_tokens,
    heatmap_cells,
    hover_heatmap_cell,
    hover_point,
    hover_saliency_token,
    legends_over_axis_titles,
    overlapping_cell_labels,
    main_text,
    open_app,
    outlined_token,
    page_files,
    saliency_shading,
    screenshot,
    selectbox_value,
    sidebar_run,
    url_path,
    wait_for_charts,
    wait_for_first_run,
    wait_for_run,
    wait_until_settled,
)
from ecco_core.plots import FACTOR_COLORS, display_token, escape_token, factor_levels, saliency_bars
from ecco_core.text import position_text

import dashboard
import ecco_core as ec

pytestmark = pytest.mark.browser

DEFAULT_TEXT = dashboard.DEFAULT_PROMPTS[ec.DEFAULT_MODEL]  # what the sidebar starts with


@pytest.fixture(scope="module")
def default_capture(lm):
    """What the home page's default run must show: the library's own capture, computed here."""
    return ec.capture(lm, DEFAULT_TEXT, max_new_tokens=20)


def as_shown(token: str) -> str:
    """A token as the browser shows it: its escaped display text, read back (``'`` stays ``'``)."""
    return html.unescape(escape_token(token))


def shown_text(tokens) -> str:
    return "".join(as_shown(token) for token in tokens)


def tokens_view(page) -> str:
    """The text as the token view shows it (generated tokens included), once the run has drawn it."""
    view = page.locator('[data-testid="stMain"] div[style*="font-family: monospace"]').first
    return view.inner_text(timeout=RUN_TIMEOUT_MS)


# ------------------------------------------------------------------ home page
def test_home_page_runs_the_default_flow(page, app_url, default_capture):
    open_app(page, app_url)
    assert_healthy(page)
    assert wait_for_charts(page) == 1
    text = main_text(page)
    assert "Ecco Explorer" in text
    assert shown_text(default_capture.tokens) in text  # prompt and generated continuation, as tokens
    page.wait_for_selector('[data-testid="stDataFrame"]')  # the grid is drawn after the run ends
    assert page.locator('[data-testid="stDataFrame"]').count() == 1
    assert "text=Romeo+and+Juliet" in page.url
    # No gap between tokens ("Rome o" read as two words, #31): words are parted by their own spaces.
    gaps = gaps_between_tokens(page, '[data-testid="stMain"] div[style*="font-family: monospace"] > span')
    assert len(gaps) > 10 and max(gaps) < 0.5, gaps
    screenshot(page, "0_Home")


def test_home_page_csv_holds_the_tokens(page, app_url, default_capture):
    open_app(page, app_url)
    frame = download_csv(page, "Download tokens (CSV)")
    assert list(frame["token"]) == list(default_capture.tokens)
    assert list(frame["token_id"]) == default_capture.token_ids.tolist()
    assert frame["generated"].sum() == default_capture.n_generated == 20
    # Greedy generation: each generated token is the prediction made one position earlier.
    predicted = list(frame["next_token_prediction"])[default_capture.n_input - 1 : -1]
    assert predicted == list(default_capture.tokens[default_capture.n_input :])

    # The heatmap's own data: the top 5 candidates at every position.
    candidates = download_csv(page, "CSV")
    expected = default_capture.predictions_frame(5)
    assert list(candidates.columns) == list(expected.columns) and len(candidates) == 5 * default_capture.n_tokens
    assert list(candidates["prediction"]) == list(expected["prediction"])
    np.testing.assert_allclose(candidates["probability"], expected["probability"], atol=1e-6)


def test_clicking_a_heatmap_cell_selects_that_position(page, app_url, default_capture):
    open_app(page, app_url)
    wait_for_charts(page)
    position = default_capture.n_input - 1  # the last prompt token: what came next is generated
    assert len(heatmap_cells(page, 0)) == 5 * default_capture.n_tokens
    assert "After position" not in main_text(page)
    click_heatmap_cell(page, 0, row=0, col=position)
    assert_healthy(page)
    assert f"After position {position}" in main_text(page)
    outlined = page.locator('span[style*="outline"]')
    assert outlined.count() == 1 and outlined.inner_text() == as_shown(default_capture.tokens[position])
    click_heatmap_cell(page, 0, row=2, col=2)
    assert "After position 2" in main_text(page)


def test_markup_and_mixed_scripts_show_as_text_and_run_nothing(page, app_url):
    prompt = "<script>alert(1)</script><img src=x onerror=alert(2)> مرحبا 🙂 שלום"
    open_app(page, app_url, text=prompt, new=2)
    assert_healthy(page)
    tokens_view = page.locator('[data-testid="stMain"]').inner_text()
    assert "<script>alert(1)</script><img src=x onerror=alert(2)>" in tokens_view
    assert "مرحبا" in tokens_view and "🙂" in tokens_view
    assert page.get_by_label("Prompt", exact=True).input_value() == prompt
    page.wait_for_timeout(500)
    assert page.dialogs == []
    assert page.locator('[data-testid="stMain"] script, [data-testid="stMain"] img[src="x"]').count() == 0


def test_a_long_prompt_is_refused_and_the_app_keeps_serving(page, app_url):
    open_app(page, app_url)
    sidebar_run(page, Prompt="word " * 1000)  # 5 000 characters, 1 000 tokens
    assert any("at most 512" in message and "ECCO_MAX_PROMPT_TOKENS" in message for message in errors(page))
    assert page.locator(EXCEPTION).count() == 0
    sidebar_run(page, Prompt="The capital of France is", Max_new_tokens=3)
    assert_healthy(page)
    assert "The capital of France is Paris." in main_text(page)
    # Run on NDIF (#28): the key is typed into a password field and never reaches the address bar. NDIF is a
    # closed port for this server, so the page says it is unreachable; back on this machine, the run is still there.
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("NDIF", exact=True).click()
    wait_for_run(page)
    key_field = sidebar.get_by_label("NDIF API key", exact=True)
    assert key_field.get_attribute("type") == "password"
    key_field.fill("ndif-browser-key-31c8")
    key_field.press("Enter")
    wait_for_run(page)
    assert "run_on=ndif" in page.url and "ndif-browser-key-31c8" not in page.url
    assert any("is unreachable" in message for message in errors(page)), errors(page)
    assert not any("ndif-browser-key-31c8" in message for message in errors(page))
    # The key stays in its field from page to page (it was drawn empty on every other page, though still kept).
    for name in ("Attention", "Home"):
        sidebar.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=name, exact=True).click()
        wait_for_run(page)
        wait_until_settled(page)
        assert sidebar.get_by_label("NDIF API key", exact=True).input_value() == "ndif-browser-key-31c8", name
    sidebar.get_by_text("this machine", exact=True).click()
    wait_for_run(page)
    assert_healthy(page)
    assert "The capital of France is Paris." in main_text(page) and "run_on" not in page.url


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"text": "   "}, "empty or whitespace"),
        ({"model": "no-such-model"}, "or in the local hub cache"),
        ({"model": "/no/such/folder/model"}, "does not exist"),
        ({"model": "openai-community/gpt2"}, "or in the local hub cache (the hub is unreachable)"),
        ({"new": 500}, "at most 64"),
    ],
    ids=["blank-prompt", "unknown-model", "missing-path", "hub-name-offline", "too-many-new-tokens"],
)
def test_bad_input_gives_a_clear_error(page, app_url, settings, message):
    open_app(page, app_url, **settings)
    assert any(message in shown for shown in errors(page)), errors(page)
    assert page.locator(EXCEPTION).count() == 0
    assert "press Run" in main_text(page)  # the page says what to do instead of failing


def test_a_folder_that_is_not_a_model_gives_a_clear_error(page, app_url, tmp_path):
    open_app(page, app_url, model=str(tmp_path))
    assert any("was not found" in shown for shown in errors(page)), errors(page)
    assert page.locator(EXCEPTION).count() == 0


def test_a_copied_link_reopens_the_same_view(page, app_url, browser):
    open_app(page, app_url)
    sidebar_run(page, Prompt="The keys to the cabinet", Max_new_tokens=4)
    assert_healthy(page)
    view = tokens_view(page)
    assert view.startswith("The keys to the cabinet") and len(view) > len("The keys to the cabinet")
    link = page.url
    assert "text=The+keys+to+the+cabinet" in link and "new=4" in link

    other = browser.new_context().new_page()
    try:
        other.goto(link)
        wait_for_first_run(other)
        assert_healthy(other)
        assert tokens_view(other) == view
        assert other.get_by_label("Prompt", exact=True).input_value() == "The keys to the cabinet"
    finally:
        other.context.close()


def test_example_buttons_load_their_settings(page, app_url):
    open_app(page, app_url)
    page.locator(".st-key-home_example_layer_predictions button").click()
    wait_for_run(page)
    assert_healthy(page)
    assert page.get_by_label("Prompt", exact=True).input_value() == "The keys to the cabinet"
    assert "text=The+keys+to+the+cabinet" in page.url


def test_home_page_shows_a_chart_without_scrolling(page, app_url):
    """#31 item 5: at 1400 x 900 the views' list came first and Home's first chart began at y = 1294 px, below
    the fold. The run's text and chart come first now."""
    page.set_viewport_size({"width": 1400, "height": 900})
    open_app(page, app_url)
    wait_for_charts(page)
    top = page.locator('[data-testid="stPlotlyChart"]').first.bounding_box()["y"]
    assert top < 900 - 100, top  # its top, and some of the chart, within the first screen
    screenshot(page, "0_Home_fold")


def test_home_page_link_keeps_the_clicked_cell(page, app_url, browser, default_capture):
    """#31 item 12: the clicked cell of Home's heatmap is in the address bar; the copied link reopens it."""
    open_app(page, app_url)
    wait_for_charts(page)
    position = default_capture.n_input - 1
    click_heatmap_cell(page, 0, row=1, col=position)
    page.wait_for_function("cell => location.search.includes('home_cell=' + cell)", arg=f"1%2C{position}")
    other = browser.new_context().new_page()
    try:
        other.goto(page.url)
        wait_for_first_run(other)
        assert_healthy(other)
        assert f"After position {position}" in main_text(other)
        wait_for_charts(other)  # the run has ended before plotly has drawn its chart
        shapes = other.evaluate("() => document.querySelector('.js-plotly-plot').layout.shapes")
        assert [(shape["x0"], shape["y0"]) for shape in shapes] == [(position - 0.5, 0.5)]
    finally:
        other.context.close()


# -------------------------------------------------------------- every page
def open_page(page, app_url, stem: str, **params) -> None:
    """Open a page by its file stem, check it is healthy and listed in the sidebar's navigation."""
    path = url_path(PAGES / f"{stem}.py")
    open_app(page, app_url, path, **params)
    assert_healthy(page)
    links = page.locator('[data-testid="stSidebarNav"] a').all()
    assert any(link.get_attribute("href").split("?")[0].endswith("/" + path) for link in links)


def clickable_chart(page) -> int:
    """Index of the first chart on the page whose points carry [row, col] cells.

    Waits up to 30 s: under load the run finishes before every chart has drawn its data.
    """
    wait_until_settled(page)
    for _ in range(60):
        for index in range(page.locator('[data-testid="stPlotlyChart"]').count()):
            if heatmap_cells(page, index):
                return index
        page.wait_for_timeout(500)
    raise AssertionError("no clickable chart on the page")


def browser_tests_naming(names: set[str]) -> dict[str, list[str]]:
    """For each of ``names``, the browser tests (taking the ``page`` fixture) that name it in a string of their own."""
    found = {name: [] for name in names}
    for module in sorted(Path(__file__).parent.glob("test_*.py")):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
                    and "page" in [argument.arg for argument in node.args.args]):
                continue
            strings = {leaf.value for leaf in ast.walk(node) if isinstance(leaf, ast.Constant)}
            for name in names & strings:
                found[name].append(f"{module.name}::{node.name}")
    return found


def test_every_page_has_its_own_browser_test():
    """Each page file is opened by a browser test of its own: by its file stem (open_page) or its URL path
    (open_app), written in that test."""
    pages = page_files()
    assert len(pages) >= 7  # the seven views, at least
    names = {path.stem for path in pages} | {url_path(path) for path in pages}
    tests = browser_tests_naming(names)
    untested = [path.name for path in pages if not tests[path.stem] + tests[url_path(path)]]
    assert not untested, f"no browser test opens {untested}"


@pytest.fixture(scope="module")
def default_saliency(lm, default_capture):
    return ec.saliency(
        lm, default_capture, method=list(ec.SALIENCY_METHODS)[0], target=list(ec.SALIENCY_TARGETS)[0]
    )


def test_saliency_page_clicking_a_row_explains_that_token(page, app_url, default_saliency):
    sal = default_saliency
    attributed = sal.attributed_mask()
    open_page(page, app_url, "1_Saliency")
    assert wait_for_charts(page, 2) == 2
    screenshot(page, "1_Saliency")
    heatmap = clickable_chart(page)
    bars = 1 - heatmap
    assert len(heatmap_cells(page, heatmap)) == len(sal.positions) * sal.n_tokens
    # By default the first generated token is explained; its bars are its row of the library's scores.
    assert selectbox_value(page, "Explained token") == explained_label(sal, 0)
    assert outlined_token(page) == as_shown(sal.explained_tokens[0])
    np.testing.assert_allclose(chart_traces(page, bars)[0]["x"], 100 * sal.scores[0][attributed[0]], atol=0.5)

    row = 7
    click_heatmap_cell(page, heatmap, row=row, col=0)
    assert_healthy(page)
    assert selectbox_value(page, "Explained token") == explained_label(sal, row)
    assert outlined_token(page) == as_shown(sal.explained_tokens[row])
    shown = chart_traces(page, bars)[0]
    assert len(shown["x"]) == attributed[row].sum() > attributed[0].sum()
    np.testing.assert_allclose(shown["x"], 100 * sal.scores[row][attributed[row]], atol=0.5)

    frame = download_csv(page, "CSV")
    expected = sal.to_frame()
    assert list(frame.columns) == list(expected.columns)
    assert frame["output_position"].tolist() == expected["output_position"].tolist()
    assert frame["input_token"].tolist() == list(expected["input_token"])
    np.testing.assert_allclose(frame.groupby("output_position")["score"].sum(), 1.0, atol=1e-6)
    np.testing.assert_allclose(frame["score"], expected["score"], atol=5e-3)

    # The figure file is made on click and carries plotly.js, so it opens offline.
    figure_file = download(page, "HTML").decode()
    assert figure_file.lower().startswith("<!doctype html>") and len(figure_file) > 1_000_000
    assert "Plotly.newPlot" in figure_file and "<script src=" not in figure_file
    assert_healthy(page)


def explained_label(sal, row: int) -> str:
    """How the Explained token box names row ``row``: ``"9: ␣1"``."""
    return f"{sal.positions[row]}: {display_token(sal.explained_tokens[row])}"


def test_saliency_page_hovering_a_token_reshades_the_text_and_a_click_pins_it(
    page, app_url, lm, default_capture, default_saliency
):
    """The paper's Figure 3 in the app: hovering a generated token re-shades the text by its row in the browser
    (no rerun; the median hover painted within 100 ms of the pointer event), leaving restores the pinned row,
    a click pins the token and the Explained token box, the URL and the detail follow; the signed shading shows
    both directions."""
    sal = default_saliency
    open_page(page, app_url, "1_Saliency")
    page.wait_for_selector(f'.ecco-saliency-view[data-pinned="{sal.positions[0]}"]')
    np.testing.assert_allclose(saliency_shading(page), expected_saliency_shading(sal, 0), atol=1 / 255)
    gaps = gaps_between_tokens(page, ".ecco-saliency-view .ecco-token")  # none inside a word (#31)
    assert len(gaps) > 10 and max(gaps) < 0.5, gaps
    timings = []
    for row in (3, 11, 15, 19, 7):
        timings.append(hover_saliency_token(page, int(sal.positions[row])))
        assert page.locator(RUNNING).count() == 0  # the browser re-shaded alone: no script run
        np.testing.assert_allclose(saliency_shading(page), expected_saliency_shading(sal, row), atol=1 / 255)
    styled, painted = (sorted(round(timing[name], 1) for timing in timings) for name in ("styled", "painted"))
    print(f"Saliency page, {sal.n_tokens} tokens: from the pointer event, re-shaded in {styled} ms, "
          f"the new frame painted in {painted} ms")
    # The median hover: on a shared CPU (load 25+ on 2 cores here) a single one may wait for a time slice.
    assert painted[len(painted) // 2] < 100, timings
    screenshot(page, "1_Saliency_hover")
    page.locator("h1").first.hover()  # leaving the token restores the pinned one
    np.testing.assert_allclose(saliency_shading(page), expected_saliency_shading(sal, 0), atol=1 / 255)

    row = 12
    page.locator(f'.ecco-explained[data-position="{sal.positions[row]}"]').click()
    wait_for_run(page)
    page.wait_for_selector(f'.ecco-saliency-view[data-pinned="{sal.positions[row]}"]')
    assert_healthy(page)
    assert selectbox_value(page, "Explained token") == explained_label(sal, row)
    page.wait_for_function("position => location.search.includes('saliency_token=' + position)",
                           arg=int(sal.positions[row]))
    page.locator("h1").first.hover()
    np.testing.assert_allclose(saliency_shading(page), expected_saliency_shading(sal, row), atol=1 / 255)
    bars = 1 - clickable_chart(page)
    np.testing.assert_allclose(chart_traces(page, bars)[0]["x"], 100 * sal.scores[row][sal.attributed_mask()[row]],
                               atol=0.5)

    # Signed, from a link: blue for the token, red for the foil, on the text as in the library.
    contrastive = ec.saliency(lm, default_capture, target="logit", contrast_with="in")
    open_page(page, app_url, "1_Saliency", saliency_target="logit", saliency_contrast="in",
              saliency_shading="signed", saliency_token=int(contrastive.positions[3]))
    page.wait_for_selector(f'.ecco-saliency-view[data-pinned="{contrastive.positions[3]}"]')
    np.testing.assert_allclose(saliency_shading(page), expected_saliency_shading(contrastive, 3, signed=True),
                               atol=1 / 255)
    hover_saliency_token(page, int(contrastive.positions[11]))
    np.testing.assert_allclose(saliency_shading(page), expected_saliency_shading(contrastive, 11, signed=True),
                               atol=1 / 255)
    screenshot(page, "1_Saliency_signed")


def test_saliency_integrated_gradients_are_announced_shown_and_stopped(page, app_url):
    """#16 item 10 on the Saliency page: switching to integrated gradients (64 steps, minutes on 2 shared cores)
    announces the estimate, shows progress through the blocks, clears the charts of the earlier method at once,
    and stops on the page's Stop button."""
    open_page(page, app_url, "1_Saliency", saliency_steps=64)
    assert wait_for_charts(page, 2) == 2  # grad_x_input's bars and heatmap
    main = page.locator('[data-testid="stMain"]')
    main.get_by_role("combobox", name="Method", exact=True).click()
    page.get_by_role("option", name="IG", exact=True).click()  # the select shows the registry's label
    status = page.locator('[data-testid="stExpander"]').filter(has_text="expected on this machine")
    status.wait_for(timeout=60_000)
    assert "Attributing with IG, 64 steps" in status.inner_text()
    page.wait_for_function("() => /Gradients of targets? [0-9]+(-[0-9]+)? of [0-9]+ back to block/.test(document.body.innerText)", timeout=180_000)
    assert "path points 1-" in main_text(page)
    assert page.locator('[data-testid="stPlotlyChart"]').count() == 0  # no chart of the earlier method
    screenshot(page, "1_Saliency_running")
    started = time.monotonic()
    main.get_by_role("button", name="Stop").click()
    page.get_by_text("Attributing with IG, 64 steps: stopped").wait_for(timeout=120_000)
    wait_for_run(page)
    assert time.monotonic() - started < 120  # stopped at the next progress update, not at the end
    assert page.locator('[data-testid="stPlotlyChart"]').count() == 0
    assert page.get_by_role("button", name="Run again").is_visible()
    assert_healthy(page)


def test_layer_predictions_page_clicking_a_cell_follows_its_token(page, app_url, lm, default_capture):
    # ec.rankings and lens_diagnostics, from one pass of the lens as the page computes them (test_trust: the same).
    result, diagnostics = ec.trust.rankings_and_diagnostics(lm, default_capture, k=5)
    # As the heatmap's columns name them, whitespace as every view shows it (#31 item 16; was the repr "10: '\\n'").
    labels = [position_text(p, t) for p, t in zip(result.target_positions, result.targets)]
    open_page(page, app_url, "2_Layer_predictions", **{"watch_words": "1564, 1616, ."})
    assert wait_for_charts(page, 4) == 4  # the lens heatmap and its line; the candidates' heatmap and lines
    screenshot(page, "2_Layer_predictions")
    # The line charts' legends read clear of their x axis titles (#31: one under the plot ran into it at 1400 px).
    assert legends_over_axis_titles(page) == []
    assert clickable_chart(page) == 0
    # Typed candidates alone (chips unselected); a year is 5 tokens here, so its label says "(1st token)".
    assert chart_traces(page, 2)[0]["x"] == ["1564 (1st token)", "1616 (1st token)", "."]
    assert chart_title(page, 1) == f"Probability of {labels[0]} by block"

    column = 9
    click_heatmap_cell(page, 0, row=3, col=column)
    assert_healthy(page)
    assert selectbox_value(page, "Token") == labels[column]
    assert chart_title(page, 1) == f"Probability of {labels[column]} by block"
    line = chart_traces(page, 1)[0]
    np.testing.assert_allclose(line["y"], result.probs[:, column], atol=1e-3)

    frame = download_csv(page, "CSV")
    assert len(frame) == result.n_layers * result.n_columns
    assert frame["layer"].tolist()[:: result.n_columns] == [f"block {b}" for b in range(result.n_layers)]
    assert frame["token"].tolist() == list(result.to_frame()["token"])
    top_tokens = frame["top_tokens"].map(ast.literal_eval)
    # Rank 1 means the token is that layer's top prediction, and nothing else does.
    assert ((frame["rank"] == 1) == (frame["token"] == top_tokens.str[0])).all()
    np.testing.assert_allclose(frame["probability"], result.probs.ravel(), atol=1e-3)
    # How far to trust each row (#30), in the same download: the lens's KL and top-1 agreement at that block.
    lens = diagnostics.to_frame().set_index("layer")
    np.testing.assert_allclose(frame["lens_mean_kl"], lens.loc[frame["layer"], "mean_kl"], rtol=1e-4)
    np.testing.assert_allclose(frame["lens_top1_agreement"], lens.loc[frame["layer"], "top1_agreement"])
    # The trust panels stand on the heatmap's rows: hovering a KL point names its block as the row does (#30).
    # Scatter traces in drawing order: the heatmap's click layer, then the KL panel, then the agreement panel.
    assert hover_point(page, 0, 1, 28) == f"block 28: KL {lens.loc['block 28', 'mean_kl']:.2f} nats"


def _factor_frame(page):
    """The frame that holds the factor view: the page itself (a component, not an iframe, since #31)."""
    page.wait_for_selector(".ecco-factor-view .ecco-spark", state="attached", timeout=60_000)
    return page.main_frame


def _computed_backgrounds(page) -> np.ndarray:
    """(r, g, b, alpha) of every analysed token of the factor view, as the browser computed them."""
    colours = _factor_frame(page).evaluate(
        "() => [...document.querySelectorAll('.ecco-factor-view .ecco-token[data-column]')]"
        ".map(span => getComputedStyle(span).backgroundColor)"
    )
    values = [[float(v) for v in re.findall(r"[\d.]+", colour)] for colour in colours]
    return np.array([v if len(v) == 4 else v + [1.0] for v in values])


def _factor_colours(levels: np.ndarray, factors) -> np.ndarray:
    """Expected (r, g, b, alpha): each token in its factor's colour, as strong as that factor's level there."""
    rgb = [[int(FACTOR_COLORS[f][i:i + 2], 16) for i in (1, 3, 5)] for f in factors]
    return np.column_stack([rgb, [levels[f, column] for column, f in enumerate(factors)]])


def test_neuron_factors_page_hovering_a_sparkline_isolates_its_factor(page, app_url):
    open_page(page, app_url, "3_Neuron_factors")
    view = _factor_frame(page)
    screenshot(page, "3_Neuron_factors")
    frame = download_csv(page, "CSV")
    factor_columns = [f"factor_{factor}" for factor in range(10)]
    assert list(frame.columns) == ["position", "token", *factor_columns]
    assert 0 not in frame["position"].tolist()  # a causal model's first token (the attention sink) is left out
    assert (frame[factor_columns] >= 0).all().all()  # NMF
    levels, dominant = factor_levels(frame[factor_columns].to_numpy().T)

    np.testing.assert_allclose(_computed_backgrounds(page), _factor_colours(levels, dominant), atol=0.01)
    assert len(set(dominant.tolist())) > 1  # several factors' colours on the text
    gaps = gaps_between_tokens(page, ".ecco-factor-view .ecco-text .ecco-token")  # none inside a word (#31)
    assert len(gaps) > 10 and max(gaps) < 0.5, gaps
    factor = 3
    view.locator(".ecco-factor-view .ecco-spark").nth(factor).hover(position={"x": 10, "y": 10})
    np.testing.assert_allclose(_computed_backgrounds(page), _factor_colours(levels, [factor] * len(frame)),
                               atol=0.01)
    screenshot(page, "3_Neuron_factors_hover")
    page.mouse.move(1, 1)
    np.testing.assert_allclose(_computed_backgrounds(page), _factor_colours(levels, dominant), atol=0.01)
    axis = view.evaluate("() => [...document.querySelectorAll('.ecco-factor-view .ecco-axis-label')]"
                         ".map(label => label.textContent)")
    assert axis[0] == frame["token"].iloc[0].strip()  # the sparklines' x axis names the tokens
    assert_healthy(page)


def test_neuron_factors_page_clicking_a_factor_by_its_label_follows_it(page, app_url, default_capture):
    """The radio under the factor view, clicked on its label text as a user does (the input itself is hidden):
    the factor is selected, and One neuron moves to that factor's strongest neuron (the library's own, computed
    here on the same capture), its bars titled with it. A click on a factor's sparkline selects it the same way,
    in the URL too (#31)."""
    cap = default_capture
    positions = ec.factors.analysed_positions(cap, skip_special=True, skip_first=True)
    top = ec.factors(cap, "nmf", n_components=10, positions=list(positions)).top_neurons(10)

    def strongest(factor: int) -> tuple[int, int]:
        row = top[top["factor"] == factor].iloc[0]
        return int(row["block"]), int(row["neuron"])

    def shown_neuron() -> tuple[int, int]:
        return tuple(int(main.get_by_label(label, exact=True).input_value()) for label in ("Block (its FFN)", "Neuron"))

    open_page(page, app_url, "3_Neuron_factors")
    _factor_frame(page)
    main = page.locator('[data-testid="stMain"]')
    radio = main.locator('[data-testid="stRadio"]').filter(has_text="Neurons loading most on")
    assert radio.get_by_role("radio", name="F0", exact=True).is_checked()
    assert shown_neuron() == strongest(0)
    factor = next(f for f in range(1, 10) if strongest(f) != strongest(0))
    radio.get_by_text(f"F{factor}", exact=True).click()
    wait_for_run(page)
    assert_healthy(page)
    assert radio.get_by_role("radio", name=f"F{factor}", exact=True).is_checked()
    block, neuron = strongest(factor)
    assert shown_neuron() == (block, neuron)
    titles = [chart_title(page, index) for index in range(page.locator('[data-testid="stPlotlyChart"]').count())]
    assert f"block {block} FFN, neuron {neuron}" in titles, titles

    # A click on a factor's sparkline (it pins the factor in the view) selects it on the whole page and in the URL.
    clicked = next(f for f in range(1, 10) if f != factor and strongest(f) != strongest(factor))
    page.locator(".ecco-factor-view .ecco-spark").nth(clicked).click(position={"x": 10, "y": 10})
    wait_for_run(page)
    assert radio.get_by_role("radio", name=f"F{clicked}", exact=True).is_checked()
    assert shown_neuron() == strongest(clicked)
    assert f"factors_pick={clicked}" in page.url
    page.mouse.move(1, 1)  # off the sparkline: the view still shows the factor it pinned
    assert page.locator(".ecco-factor-view").get_attribute("data-factor") == str(clicked)


def test_neuron_factors_page_on_homes_short_example_draws_its_factors(page, app_url):
    """Home's Layer predictions example (6 tokens) on this page: a factor view, not 'n_components must be ...'."""
    open_page(page, app_url, "3_Neuron_factors", text="The keys to the cabinet", new=1)
    view = _factor_frame(page)
    assert view.locator(".ecco-factor-view .ecco-spark").count() == ec.factors.default_components(5)
    assert "2 factors by default on this short text" in main_text(page)
    assert selectbox_value(page, "Rank the FFN's neurons on") == "all tokens (peak)"  # not "Choose an option"
    screenshot(page, "3_Neuron_factors_short")


def test_similarity_page_clicking_a_cell_reads_that_pair_of_layers(page, app_url, lm):
    open_page(page, app_url, "4_Similarity")
    wait_for_charts(page)
    screenshot(page, "4_Similarity")
    # 31 x 30 cells in the page's column: no values written into each other ("0.970.971.00", #31 pass).
    assert overlapping_cell_labels(page) == []
    frame = download_csv(page, "CSV")
    # Beside the value, the permutation baseline of the cell tested (#30): before a click, the median cell.
    assert list(frame.columns) == ["row", "column", "row_index", "column_index", "method", "value", "null_mean",
                                   "null_std", "null_max", "p_value", "n_permutations"]
    assert len(frame) == (lm.n_layers + 1) * lm.n_layers  # hidden states (embedding too) x FFN activations
    tested = frame[frame["n_permutations"] != ""]
    assert len(tested) == 1 and float(tested["value"].iloc[0]) == sorted(frame["value"].astype(float))[len(frame) // 2]
    assert frame["value"].between(-1e-6, 1 + 1e-6).all()
    assert "Click a cell" in main_text(page)

    row_index, column_index = 12, 5
    click_heatmap_cell(page, clickable_chart(page), row=row_index, col=column_index)
    assert_healthy(page)
    cell = frame[(frame["row_index"] == row_index) & (frame["column_index"] == column_index)].iloc[0]
    assert (cell["row"], cell["column"]) == ("block 11", "block 5 FFN")  # hidden_states[12] and ffn[5]
    closest = frame[frame["row_index"] == row_index].sort_values("value").iloc[-1]
    text = main_text(page)
    assert f"{cell['row']} vs {cell['column']}: {cell['method']} = {cell['value']:.4f}" in text
    assert f"the closest column is {closest['column']} ({closest['value']:.4f})" in text
    assert f"block 11 vs block 5 FFN: {cell['value']:.2f}; with one side's token positions shuffled" in text
    tested = download_csv(page, "CSV").query("n_permutations != ''")
    assert (tested["row_index"].tolist(), tested["column_index"].tolist()) == ([12], [5])
    # The chance chart's title reads in full for the longest labels too (#31 item 16: "... block 26 FF").
    click_heatmap_cell(page, clickable_chart(page), row=27, col=26)
    assert "block 26 vs block 26 FFN: " in main_text(page)
    screenshot(page, "4_Similarity_chance")
    assert clipped_text(page) == []


def _fill(page, label: str, value) -> None:
    """Type into a number input of the main area and leave it (no form: the page reruns)."""
    field = page.locator('[data-testid="stMain"]').get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Tab")
    wait_for_run(page)


def test_probing_page_runs_small_probes(page, app_url, lm):
    open_page(page, app_url, "5_Probing")
    assert "press Run probes" in main_text(page)
    assert "on this machine" in main_text(page)  # the estimate, before anything runs
    assert page.locator('[data-testid="stPlotlyChart"]').count() == 0  # nothing runs before the button
    _fill(page, "Tokens", 100)
    _fill(page, "Epochs", 3)
    assert page.get_by_role("radio", name="Custom").is_checked()
    page.get_by_role("button", name="Run probes").click()
    wait_for_run(page)
    assert wait_for_charts(page, 2) == 2
    page.wait_for_selector('[data-testid="stDataFrame"]')
    assert_healthy(page)
    assert "over 1 trial;" in main_text(page)
    screenshot(page, "5_Probing")

    frame = download_csv(page, "CSV")
    assert list(frame.columns) == [
        "layer", "representation", "block", "accuracy", "accuracy_std", "selectivity", "selectivity_std",
        "control_accuracy", "majority_accuracy", "lr",
    ]
    assert len(frame) == 1 + 2 * 8  # the quick layers: the embeddings (hidden only), then hidden and FFN of 8 blocks
    assert frame["layer"].astype(str).tolist()[:3] == ["embeddings", "block 0", "block 0 FFN"]
    assert frame[["accuracy", "control_accuracy", "majority_accuracy"]].stack().between(0, 1).all()
    assert (frame["accuracy_std"] == 0).all()  # one trial
    np.testing.assert_allclose(frame["selectivity"], frame["accuracy"] - frame["control_accuracy"], atol=1e-6)


def test_probing_long_run_is_announced_shown_and_stopped(page, app_url):
    open_page(page, app_url, "5_Probing")
    # A Streamlit radio's input lies under its label, which takes the click.
    page.locator('[data-testid="stMain"]').get_by_text("The paper's protocol (Table 1)").click()
    wait_for_run(page)
    assert "min on this machine" in main_text(page)
    page.get_by_role("button", name="Run probes").click()
    status = page.locator('[data-testid="stExpander"]').filter(has_text="expected on this machine")
    status.wait_for(timeout=30_000)
    page.wait_for_function("() => document.body.innerText.includes('running SmolLM2')", timeout=60_000)
    screenshot(page, "5_Probing_running")
    started = time.monotonic()
    page.locator('[data-testid="stMain"]').get_by_role("button", name="Stop").click()
    page.get_by_text("Training the probes: stopped").wait_for(timeout=30_000)
    wait_for_run(page)
    assert time.monotonic() - started < 30  # the work stopped, it did not run to its end
    assert page.locator('[data-testid="stPlotlyChart"]').count() == 0
    assert page.get_by_role("button", name="Run again").is_visible()
    assert_healthy(page)


def test_probing_uploads_that_are_malformed_or_not_utf8_are_named(page, app_url):
    open_page(page, app_url, "5_Probing")
    form = page.locator('[data-testid="stMain"]')
    form.get_by_text("Upload a .conllu file").click()
    wait_for_run(page)
    _fill(page, "Tokens", 100)
    _fill(page, "Epochs", 3)
    uploads = {
        "malformed.conllu": (b"# text = Hi there\n1\tHi\thi\tINTJ\t_\t_\t0\troot\t_\t_\n2\tthere\tADV\n\n",
                             "CoNLL-U line 3 has 3 tab-separated fields"),
        "latin1.conllu": ("1\tcafé\tcafé\tNOUN\t_\t_\t0\troot\t_\t_\n\n".encode("latin-1"), "not UTF-8"),
    }
    for name, (content, message) in uploads.items():
        form.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
            {"name": name, "mimeType": "text/plain", "buffer": content}
        )
        wait_for_run(page)  # the upload's own rerun, before Run reads it
        form.get_by_role("button", name="Run probes").click()
        wait_for_run(page)
        assert any(message in error for error in errors(page)), (name, errors(page), main_text(page)[-1500:])
        assert not page.locator(EXCEPTION).count()
    # the app keeps serving, and the capture on screen is not lost
    assert "generated tokens" in page.locator('[data-testid="stSidebar"]').inner_text()


def test_saliency_settings_survive_an_error_run(page, app_url):
    """#31 items 8 and 11: a Run with an empty prompt shows its error and puts that prompt in the address bar;
    the next valid Run draws the page's controls again with their values (IG steps stayed at 4, where the box
    used to come back as 1 and send 1 with the next rerun, into the attribution and the link)."""
    open_page(page, app_url, "1_Saliency", text="The keys", new=1, saliency_method="integrated_gradients",
              saliency_steps=4)
    steps = page.locator('[data-testid="stMain"]').get_by_label("IG steps", exact=True)
    assert steps.input_value() == "4"
    sidebar_run(page, Prompt="")
    assert any("empty or whitespace" in shown for shown in errors(page)), errors(page)
    assert "text=&" in page.url and "The+keys" not in page.url
    sidebar_run(page, Prompt="The keys")
    wait_for_charts(page, 2)
    assert_healthy(page)
    assert steps.input_value() == "4"
    main = page.locator('[data-testid="stMain"]')
    main.get_by_role("radiogroup").get_by_text("signed: for vs against").click()  # any rerun of the page
    wait_for_run(page)
    assert steps.input_value() == "4" and "saliency_steps=4" in page.url and "text=The+keys" in page.url


@pytest.mark.parametrize("width", [300, 360, 480])
def test_signed_saliency_bar_labels_are_drawn_whole_inside_the_plot(page, width):
    """#31 item 13: a long negative bar's label ran past the plot's left edge, where the plot clips it: "-39.6%"
    read "9.6%". Each label, drawn at the widths the Detail column takes, lies wholly within the plot area."""
    shares = np.array([0.05, -0.396, 0.40, 0.05, -0.054, 0.05])
    figure = saliency_bars(["Romeo", " and", " Juliet", " was", " written", " by"], shares, signed=True)
    figure.update_layout(width=width)
    page.set_content(figure.to_html(include_plotlyjs=True, full_html=True))
    page.wait_for_selector(".bartext")
    area = page.locator(".nsewdrag").first.bounding_box()  # the plot area (no .bglayer rect under Streamlit's template)
    labels = page.locator(".bartext").all()
    assert [label.text_content() for label in labels] == [f"{100 * share:+.1f}%" for share in shares]
    for label in labels:
        box = label.bounding_box()
        assert area["x"] - 0.5 <= box["x"] and box["x"] + box["width"] <= area["x"] + area["width"] + 0.5, (
            label.text_content(), box, area)


# ------------------------------------------------------- heatmap tooltips
def test_home_heatmap_cells_show_their_tooltip(page, app_url, default_capture):
    cap = default_capture
    open_app(page, app_url)
    wait_for_charts(page)
    column = cap.n_input - 1
    tooltip = hover_heatmap_cell(page, 0, row=1, col=column)
    assert escape_token(cap.top_tokens[column][1]).strip() in tooltip
    assert f"{cap.top_probs[column, 1]:.3f}" in tooltip


def test_saliency_heatmap_cells_show_their_tooltip(page, app_url, default_saliency):
    sal = default_saliency
    open_page(page, app_url, "1_Saliency")
    wait_for_charts(page, 2)
    row, column = 3, 2
    tooltip = hover_heatmap_cell(page, clickable_chart(page), row=row, col=column)
    assert sal.tokens[column].strip() in tooltip and sal.explained_tokens[row].strip() in tooltip
    assert f"{100 * sal.scores[row, column]:.1f}%" in tooltip


def test_layer_predictions_heatmap_cells_show_the_blocks_top_5(page, app_url, lm, default_capture):
    result = ec.rankings(lm, default_capture, k=5)
    open_page(page, app_url, "2_Layer_predictions")
    wait_for_charts(page, 2)
    block, column = 20, 4  # row 20 reads block 20's output, hidden_states[21]
    tooltip = hover_heatmap_cell(page, 0, row=block, col=column)
    assert f"block {block}: " in tooltip and f"block {block}'s top 5" in tooltip
    assert f"is rank {result.ranks[block, column]}" in tooltip
    for place, token in enumerate(result.top_tokens[block][column][:5]):
        assert f"{place + 1}. {escape_token(token).replace('&lt;', '<').replace('&gt;', '>')}" in tooltip


def test_similarity_heatmap_cells_show_their_tooltip(page, app_url):
    open_page(page, app_url, "4_Similarity")
    wait_for_charts(page)
    frame = download_csv(page, "CSV")
    row_index, column_index = 7, 3
    cell = frame[(frame["row_index"] == row_index) & (frame["column_index"] == column_index)].iloc[0]
    tooltip = hover_heatmap_cell(page, clickable_chart(page), row=row_index, col=column_index)
    assert f"{cell['row']} vs {cell['column']}: {cell['value']:.4f}" in tooltip


# ----------------------------------------------------------------- circuits
IOI = "When Mary and John went to the store, John gave a drink to"
# Where a pointer meets a drawn path: halfway along it, in page pixels.
PATH_MIDPOINT = """path => { const point = path.getPointAtLength(path.getTotalLength() / 2), m = path.getScreenCTM();
    return [m.a * point.x + m.c * point.y + m.e, m.b * point.x + m.d * point.y + m.f]; }"""
ROUTES = ".ecco-routes"


def _routes_through(frame, node: tuple[str, int]) -> int:
    """How many edges of a pruned routes frame lie on a route through ``node`` (label, position)."""
    ends = [((row.source, row.source_position), (row.target, row.target_position)) for row in frame.itertuples()]
    marked = set()
    for start, end in ((1, 0), (0, 1)):  # toward the inputs, then on up to the prediction
        seen, frontier = {node}, [node]
        while frontier:
            at = frontier.pop()
            for index, edge in enumerate(ends):
                if edge[start] == at:
                    marked.add(index)
                    if edge[end] not in seen:
                        seen.add(edge[end])
                        frontier.append(edge[end])
    return len(marked)


def test_circuits_page_tooltips_routes_threshold_a_node_and_a_head(page, app_url, lm):
    """#29 in one visit: the DLA heatmap's tooltip, the routes graph's edge and node tooltips, its threshold slider
    pruning the graph as the library does, a click on a node highlighting its routes, a click on a head opening
    its attention."""
    result = ec.circuits(lm, IOI, "Mary", "John", routes=True)
    page.set_viewport_size({"width": 1400, "height": 900})
    open_page(page, app_url, "8_Circuits", text="The capital of France is", new=1)
    wait_for_charts(page)
    page.wait_for_selector(f"{ROUTES} .ecco-route-node", state="attached")
    routes = page.locator(ROUTES)
    # Every download button's label is whole: the DLA column's 'Figure (HTML, works offline)' was cut to '… o…'.
    # Counted once the fifth is drawn: at load 28 the routes were there before any of them (0 counted, once).
    page.locator('[data-testid="stDownloadButton"]').nth(4).wait_for(state="attached")
    cut = page.evaluate("""() => [...document.querySelectorAll('[data-testid="stDownloadButton"] button *')]
        .filter(element => element.scrollWidth > element.clientWidth + 1).map(element => element.textContent)""")
    assert page.locator('[data-testid="stDownloadButton"]').count() >= 5 and cut == [], cut
    # The strongest parts' table fits its column at 1,400 x 900: its promoted tokens scrolled sideways (#31).
    page.wait_for_selector('[data-testid="stDataFrame"] .dvn-scroller')
    sideways = page.evaluate("""() => [...document.querySelectorAll('[data-testid="stDataFrame"] .dvn-scroller')]
        .map(scroller => scroller.scrollWidth - scroller.clientWidth)""")
    assert sideways and max(sideways) <= 1, sideways

    tooltip = hover_heatmap_cell(page, 0, row=23, col=3)
    strongest = int(np.argmax(np.abs(result.head_sources[23, 3])))
    assert tooltip.startswith(f"block 23 head 3: +{result.heads[23, 3]:.3f} logits"), tooltip
    assert f"reads from {strongest} {as_shown(result.tokens[strongest])!r}" in tooltip and "promotes" in tooltip

    assert int(routes.get_attribute("data-edges")) == len(result.routes_frame(0.04))
    read = result.read_position
    frame = result.routes_frame(0.01)
    index = frame.index[(frame["part"] == "FFN") & (frame["block"] == result.n_layers - 1)][0]
    edge = page.locator(f'.ecco-route-edge[data-index="{index}"]')
    edge.scroll_into_view_if_needed()
    page.mouse.move(*edge.evaluate(PATH_MIDPOINT))
    tip = page.locator(".ecco-routes-tip")
    assert tip.inner_text() == (f"block 29 FFN\nfrom block 29 after attention at {read} ' to'\n"
                                f"into block 29 at {read} ' to'\nimportance {result.route_ffn[29, read]:.3f}")
    page.locator(f'.ecco-route-node[data-row="{2 * result.n_layers}"][data-position="{read}"]').hover()
    assert tip.inner_text().startswith(f"block 29 at {read} ' to' (the prediction)\n2 edges in (importance 1.000)")

    node = page.locator('.ecco-route-node[data-row="46"][data-position="1"]')  # block 22's output at ' Mary'
    node.click()
    assert routes.get_attribute("data-selected") == "46:1"
    assert int(routes.get_attribute("data-marked")) == _routes_through(result.routes_frame(0.04), ("block 22", 1))
    screenshot(page, "8_Circuits_routes")
    node.click()
    assert routes.get_attribute("data-marked") == ""

    slider = page.locator(".ecco-routes-threshold")
    slider.focus()
    for _ in range(6):  # 0.04 to 0.10, by the keyboard's steps
        slider.press("ArrowRight")
    assert routes.locator(".ecco-routes-value").inner_text() == "0.10"
    assert int(routes.get_attribute("data-edges")) == len(result.routes_frame(0.1)) < len(result.routes_frame(0.04))
    drawn = routes.evaluate("view => [...view.querySelectorAll('.ecco-route-edge')]"
                            ".filter(path => getComputedStyle(path).display !== 'none').length")
    assert drawn == len(result.routes_frame(0.1))

    click_heatmap_cell(page, 0, row=23, col=3)
    assert_healthy(page)
    assert "circuits_head=23%2C3" in page.url
    wait_for_charts(page, 2)
    assert chart_title(page, 1) == "block 23, head 3: raw weights"
    assert f"Its attention from the read position {read} ' to'" in main_text(page)
    screenshot(page, "8_Circuits")

    # The Verify scatter's hover: a link of a verification on a short prompt opens with it, every part ablated.
    open_page(page, app_url, "8_Circuits", text="The capital of France is", new=1, circuits_prompt="Paris is in",
              circuits_answer="France", circuits_foil="Spain", circuits_ablation="mean", circuits_k=5,
              circuits_verify="true")
    assert wait_for_charts(page, 2) == 2  # the DLA heatmap and the scatter
    verified = download_csv(page, "CSV", index=2)  # the DLA's, the routes', the verification's
    part = verified[verified["exact_rank"].astype(str) == "1"].iloc[0]  # an outlier: no other point near it
    # The heads' trace, then the FFNs', each in block order (heads by head within a block).
    trace, point = (1, int(part["block"])) if part["kind"] == "FFN" else (0, int(part["block"]) * lm.n_heads
                                                                           + int(part["head"]))
    assert hover_point(page, 1, trace, point) == (
        f"{part['part']}\nDLA {float(part['value']):.3f}\nexact effect {float(part['exact_effect']):.3f}\n"
        "in the exact top 5: yes")
