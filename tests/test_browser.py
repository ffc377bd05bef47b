"""The real app in headless Chromium: every page, bad input, shareable links, downloads.

One server and one browser serve the whole test session (``tests/browser.py``);
each test is a fresh browser context, i.e. a new user. Screenshots of every
page land in ``artifacts/screenshots`` (git-ignored).
"""

import pytest

from browser import (
    EXCEPTION,
    assert_healthy,
    click_heatmap_cell,
    download_csv,
    draws_charts,
    errors,
    heatmap_cells,
    main_text,
    open_app,
    page_files,
    screenshot,
    sidebar_run,
    url_path,
    visible_content,
    wait_for_charts,
    wait_for_first_run,
    wait_for_run,
)
from ecco_core.plots import escape_token

import ecco_core as ec

pytestmark = pytest.mark.browser

SHAKESPEARE = "William Shakespeare was born in the year"


@pytest.fixture(scope="module")
def default_capture(lm):
    """What the home page's default run must show: the library's own capture, computed here."""
    return ec.capture(lm, SHAKESPEARE, max_new_tokens=20)


def shown_text(tokens) -> str:
    return "".join(escape_token(token) for token in tokens).replace("&lt;", "<").replace("&gt;", ">")


def tokens_view(page) -> str:
    """The text as the token view shows it (generated tokens included)."""
    return page.locator('[data-testid="stMain"] div[style*="font-family: monospace"]').first.inner_text()


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
    assert "text=William+Shakespeare" in page.url
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
    assert outlined.count() == 1 and outlined.inner_text() == escape_token(default_capture.tokens[position])
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
    sidebar_run(page, Prompt="word " * 4000)  # 20 000 characters
    assert any("at most 512" in message and "ECCO_MAX_PROMPT_TOKENS" in message for message in errors(page))
    assert page.locator(EXCEPTION).count() == 0
    sidebar_run(page, Prompt="The capital of France is", Max_new_tokens=3)
    assert_healthy(page)
    assert "The capital of France is Paris." in main_text(page)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"text": "   "}, "empty or whitespace"),
        ({"model": "no-such-model"}, "not found in the local hub cache"),
        ({"model": "/no/such/folder/model"}, "does not exist"),
        ({"model": "openai-community/gpt2"}, "not found in the local hub cache (the hub is unreachable)"),
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
    page.get_by_role("button", name="Load example").nth(1).click()  # the layer-predictions example
    wait_for_run(page)
    assert_healthy(page)
    assert page.get_by_label("Prompt", exact=True).input_value() == "The keys to the cabinet"
    assert "text=The+keys+to+the+cabinet" in page.url


# -------------------------------------------------------------- every page
@pytest.mark.parametrize("page_file", page_files(), ids=[path.stem for path in page_files()])
def test_every_page_runs_its_default_flow(page, app_url, page_file):
    """Open the page on the default model: charts drawn, no exception, a CSV that parses, clicks work."""
    open_app(page, app_url, url_path(page_file))
    assert_healthy(page)
    nav_links = page.locator('[data-testid="stSidebarNav"] a').all()
    assert any(link.get_attribute("href").split("?")[0].endswith("/" + url_path(page_file)) for link in nav_links)
    if draws_charts(page_file):
        wait_for_charts(page)
    screenshot(page, page_file.stem)

    csv_buttons = page.locator('[data-testid="stDownloadButton"]').filter(has_text="CSV")
    if csv_buttons.count():
        frame = download_csv(page, "CSV")
        assert len(frame) > 0 and len(frame.columns) > 0

    cells = heatmap_cells(page, 0) if draws_charts(page_file) else []
    if len(cells) > 1:
        click_heatmap_cell(page, 0, *cells[0])
        after_first = visible_content(page)
        click_heatmap_cell(page, 0, *cells[-1])
        assert_healthy(page)
        assert visible_content(page) != after_first, "clicking another cell did not change the view"
