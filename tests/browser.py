"""The real app in a real browser: one Streamlit server and one headless Chromium per test session.

Registered as a pytest plugin in ``conftest.py``, so every test module shares
the same server (``app_url``) and browser (``browser``); each test gets a fresh
browser context (``page``: its own Streamlit session). Helpers here make a
page's browser test a few lines:

    open_app(page, app_url, "Saliency", text="The capital of France is", new=3)
    assert_healthy(page)
    click_heatmap_cell(page, chart_index=0, row=2, col=5)
    frame = download_csv(page, "CSV")

Starting the server and Chromium, the pages' addresses and the selectors of a
run's state are ``app_driver``'s (the repository's root), shared with bench/.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app_driver import (  # noqa: F401 - what the browser tests use of the app's server, pages and selectors
    CHROMIUM, ERROR, EXCEPTION, FINISHED, FIRST_RUN_FINISHED, PAGES, ROOT, RUN_TIMEOUT_MS, RUNNING, app_link,
    draws_charts, errors, free_port, launch_chromium, page_files, start_server, stop_server, url_path,
)
from ecco_core import plots

ARTIFACTS = ROOT / "artifacts" / "screenshots"


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def app_url():
    """Base URL of a fresh ``streamlit run app.py`` for this test session."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium fonts-dejavu-core")
    server = start_server(free_port(), {"NDIF_HOST": "http://127.0.0.1:9"})  # NDIF, if chosen: a closed port here
    port = server.args[server.args.index("--server.port") + 1]
    yield f"http://127.0.0.1:{port}"
    stop_server(server)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh browser context (one Streamlit session) with a page that records any dialog."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    tab = context.new_page()
    tab.set_default_timeout(RUN_TIMEOUT_MS)
    tab.dialogs = []
    tab.on("dialog", lambda dialog: (tab.dialogs.append(dialog.message), dialog.dismiss()))
    tab.chart_warnings = []
    tab.on("console", lambda message: _record_chart_warning(tab, message))
    yield tab
    context.close()


def _record_chart_warning(tab, message) -> None:
    # plotly.js reports a figure it cannot draw as intended ("WARN: Invalid color specifier ...")
    # on the console and draws a fallback, so the page still looks healthy.
    if message.text.startswith("WARN:"):
        tab.chart_warnings.append(message.text)


# ----------------------------------------------------------------- helpers
def wait_for_run(page, started_timeout_ms: int = 3000) -> None:
    """Wait until the script run that an action started has finished.

    A rerun may begin a moment after the click that causes it, so first give it
    ``started_timeout_ms`` to start, then wait for it to end.
    """
    try:
        page.wait_for_selector(RUNNING, timeout=started_timeout_ms)
    except Exception:  # it may already have finished, or never needed to run
        pass
    page.wait_for_selector(FINISHED, timeout=RUN_TIMEOUT_MS)


def wait_for_first_run(page) -> None:
    """Wait for the run a page load starts to finish (not only for the state before it starts)."""
    page.wait_for_selector(FIRST_RUN_FINISHED, state="attached", timeout=RUN_TIMEOUT_MS)


def open_app(page, app_url: str, page_name: str = "", **params) -> None:
    """Open a page of the app (with query parameters) and wait for its first run to finish."""
    page.goto(app_link(app_url, page_name, **params), wait_until="commit")
    wait_for_first_run(page)


def assert_healthy(page) -> None:
    """No uncaught exception box, no error message, no chart warning from plotly.js."""
    exceptions = page.locator(EXCEPTION).all_inner_texts()
    assert not exceptions, exceptions
    assert not errors(page), errors(page)
    assert not getattr(page, "chart_warnings", []), sorted(set(page.chart_warnings))[:5]


def wait_for_charts(page, minimum: int = 1) -> int:
    """Wait until ``minimum`` Plotly charts have drawn their SVG; return how many did.

    As long as a run may take: under load, Chromium alone takes a minute to evaluate plotly.js."""
    # Charts, not SVGs: one drawn chart holds several .main-svg layers.
    page.wait_for_function(
        """(minimum) => [...document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')]
            .filter(plot => plot.querySelector('.main-svg')).length >= minimum""",
        arg=minimum, timeout=RUN_TIMEOUT_MS,
    )
    return page.locator('[data-testid="stPlotlyChart"]').count()


def main_text(page) -> str:
    return page.locator('[data-testid="stMain"]').inner_text()


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot under ``artifacts/screenshots`` (git-ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    # Streamlit scrolls inside its own container, so grow the window to the content instead.
    viewport = page.viewport_size
    height = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('[data-testid=stMain] *')].slice(0, 50)"
        ".map(node => node.scrollHeight))"
    )
    page.set_viewport_size({"width": viewport["width"], "height": min(max(height, viewport["height"]), 8000)})
    page.wait_for_timeout(300)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(viewport)
    return path


def sidebar_run(page, **fields) -> None:
    """Fill sidebar fields by label (``Prompt="..."``) and press Run."""
    sidebar = page.locator('[data-testid="stSidebar"]')
    for label, value in fields.items():
        sidebar.get_by_label(label.replace("_", " "), exact=True).fill(str(value))
    sidebar.get_by_role("button", name="Run").click()
    wait_for_run(page)


def download(page, label: str, index: int = 0) -> bytes:
    """Click a download button by its label and return the downloaded file's bytes."""
    button = page.locator('[data-testid="stDownloadButton"]').filter(has_text=label).nth(index)
    with page.expect_download() as event:
        button.click()
    return Path(event.value.path()).read_bytes()


def download_csv(page, label: str = "CSV", index: int = 0) -> pd.DataFrame:
    """A downloaded CSV as a DataFrame (strings kept as written: ``"nan"`` stays a token)."""
    return pd.read_csv(io.BytesIO(download(page, label, index)), keep_default_na=False)


def heatmap_cells(page, chart_index: int) -> list[tuple[int, int]]:
    """The clickable (row, col) cells of the ``chart_index``-th chart; empty for a chart with none."""
    chart = page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').nth(chart_index)
    cells = chart.evaluate(
        """plot => plot._fullData.flatMap(trace => Array.from(trace.customdata || [])
            .map(cell => Array.from(cell || [], Number)).filter(cell => cell.length === 2))"""
    )
    return [(int(row), int(col)) for row, col in cells]


def click_heatmap_cell(page, chart_index: int, row: int, col: int) -> None:
    """Click cell (row, col) of the ``chart_index``-th clickable chart and wait for the rerun.

    The chart is an ``ecco_core.plots.heatmap`` (one invisible scatter marker
    per cell whose ``customdata`` is ``[row, col]``) or any chart whose points
    carry such a pair (the factor sparklines). The click lands on that
    marker's centre, through Plotly's drag layer, as a user's would. Plotly
    keeps the decoded traces in ``_fullData`` (``data`` may still hold
    base64-packed arrays).

    Streamlit redraws a chart after every run; a click that lands while it is
    being redrawn is lost (or clears the selection), so the click is repeated
    until Plotly reports a click on that very point.
    """
    chart = page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').nth(chart_index)
    for _ in range(3):
        wait_until_settled(page)
        chart.scroll_into_view_if_needed()
        index = chart.evaluate(
            """(plot, [row, col]) => {
                for (const trace of plot._fullData) {
                    const cells = Array.from(trace.customdata || []).map(cell => Array.from(cell || [], Number));
                    for (let i = 0; i < cells.length; i++) {
                        if (Number(cells[i][0]) === row && Number(cells[i][1]) === col) {
                            return [plot._fullData.indexOf(trace), i];
                        }
                    }
                }
                return null;
            }""",
            [row, col],
        )
        if index is None:
            raise ValueError(f"chart {chart_index} has no clickable cell ({row}, {col})")
        trace_index, point_index = index
        marker = chart.locator(".scatterlayer .trace").nth(trace_index - _non_scatter_traces(chart, trace_index))
        point = marker.locator("path.point").nth(point_index)
        point.scroll_into_view_if_needed()
        chart.evaluate(
            """plot => {
                window.eccoClicked = null;
                if (!plot.eccoListening) {
                    plot.on("plotly_click", event => {
                        window.eccoClicked = event.points.map(({customdata: cell}) => cell == null ? []
                            : Array.isArray(cell) || ArrayBuffer.isView(cell) ? Array.from(cell, Number)
                            : Object.keys(cell).sort((a, b) => a - b).map(key => Number(cell[key])));
                    });
                    plot.eccoListening = true;
                }
            }"""
        )
        box = point.bounding_box()
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        try:
            page.wait_for_function(
                """([row, col]) => (window.eccoClicked || []).some(cell => cell[0] === row && cell[1] === col)""",
                arg=[row, col], timeout=5000,
            )
        except Exception:  # the click was lost while the chart redrew: let any rerun end, click again
            wait_for_run(page)
            continue
        wait_for_run(page)
        return
    raise AssertionError(f"clicking cell ({row}, {col}) of chart {chart_index} never registered")


def wait_until_settled(page) -> None:
    """Wait until the run has finished and no element is left stale (greyed) from an earlier run."""
    page.wait_for_selector(FINISHED, timeout=RUN_TIMEOUT_MS)
    page.wait_for_function(
        "() => !document.querySelector('[data-stale=\"true\"]')", timeout=RUN_TIMEOUT_MS
    )


def _non_scatter_traces(chart, before: int) -> int:
    """How many of the first ``before`` traces are not drawn in Plotly's scatter layer (heatmaps)."""
    return chart.evaluate(
        "(plot, before) => plot._fullData.slice(0, before).filter(t => t.type !== 'scatter').length",
        before,
    )


def chart_traces(page, chart_index: int) -> list[dict]:
    """The drawn traces of the ``chart_index``-th chart: type, name, x, y, customdata and line colour as lists."""
    chart = page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').nth(chart_index)
    return chart.evaluate(
        """plot => plot._fullData.map(trace => ({
            type: trace.type, name: trace.name, x: Array.from(trace.x || []), y: Array.from(trace.y || []),
            line_color: trace.line ? trace.line.color : null,
        }))"""
    )


def chart_title(page, chart_index: int) -> str:
    """A chart's title as drawn: the text of its SVG title, so an escaped token reads as the user sees it."""
    chart = page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').nth(chart_index)
    return chart.evaluate("plot => (plot.querySelector('.gtitle') || {}).textContent || ''")


def selectbox_value(page, label: str) -> str:
    """The option a select box labelled ``label`` shows (it is the value of its combobox input)."""
    return page.locator('[data-testid="stMain"]').get_by_role("combobox", name=label, exact=True).input_value()


def overlapping_cell_labels(page) -> list[int]:
    """Indices of the drawn charts where two values written in neighbouring heatmap cells run into each other
    (text wider than its cell reads as one string, "0.970.971.00"); empty when every cell's text stands apart."""
    return page.locator('[data-testid="stMain"]').evaluate(
        """main => [...main.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')].flatMap((chart, i) => {
            const rows = {};
            for (const label of chart.querySelectorAll('.heatmap-label')) {
                const box = label.getBoundingClientRect();
                if (box.width > 0) (rows[Math.round(box.top + box.height / 2)] ||= []).push(box);
            }
            const crowded = Object.values(rows).some(boxes => boxes.sort((a, b) => a.left - b.left)
                .some((box, k) => k > 0 && box.left < boxes[k - 1].right));
            return crowded ? [i] : [];
        })"""
    )


def legends_over_axis_titles(page) -> list[int]:
    """Indices of the drawn charts whose legend overlaps an axis title (a horizontal legend placed under the plot
    runs into the x axis title once rotated tick labels push the title down); empty when none does."""
    return page.locator('[data-testid="stMain"]').evaluate(
        """main => [...main.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')].flatMap((chart, i) => {
            const legend = chart.querySelector('.legend .bg');
            if (!legend) return [];
            const a = legend.getBoundingClientRect();
            const hit = [...chart.querySelectorAll('.g-xtitle text, .g-ytitle text')].some(title => {
                const b = title.getBoundingClientRect();
                return b.width > 0 && a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
            });
            return hit ? [i] : [];
        })"""
    )


def clipped_text(page) -> list[str]:
    """Text of the main area's widgets that does not fit its box (empty when all of it reads in full).

    A select box's value wider than its input (cut off at the right), a
    multiselect chip whose text is cut, or that sticks out of its box (a
    scrolled row of chips shows "ock 21"), or a chart's title wider than its
    chart (Similarity's narrow chance chart read "Chance: block 12 vs block 26 FF").
    """
    return page.locator('[data-testid="stMain"]').evaluate(
        """main => {
            const clipped = [];
            for (const input of main.querySelectorAll('input[role="combobox"]')) {
                if (input.value && input.scrollWidth > input.clientWidth + 1) clipped.push(input.value);
            }
            for (const chip of main.querySelectorAll('[data-tag]')) {
                const text = chip.querySelector('span');
                const box = chip.getBoundingClientRect();
                const row = chip.closest('[data-testid="stMultiSelectTagsContainer"]').getBoundingClientRect();
                if (text.scrollWidth > text.clientWidth + 1 || box.left < row.left - 1 || box.right > row.right + 1
                    || box.top < row.top - 1 || box.bottom > row.bottom + 1) {
                    clipped.push(chip.innerText);
                }
            }
            for (const chart of main.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')) {
                const title = chart.querySelector('.gtitle');
                const box = chart.getBoundingClientRect();
                const text = title && title.getBoundingClientRect();
                if (text && text.width > 0 && (text.left < box.left - 1 || text.right > box.right + 1)) {
                    clipped.push(title.textContent);
                }
            }
            return clipped;
        }"""
    )


def gaps_between_tokens(page, selector: str) -> list[float]:
    """Pixels between the text of each token span matching ``selector`` and the next one's on the same line.

    Measured on the text itself (a Range over each span's contents), so a span's padding, margin or border all
    count: a gap there reads as a space inside a word.
    """
    return page.evaluate(
        """selector => {
            const rects = [...document.querySelectorAll(selector)].map(span => {
                const range = document.createRange();
                range.selectNodeContents(span);
                const boxes = [...range.getClientRects()];
                return boxes.length ? [boxes[0], boxes[boxes.length - 1]] : null;
            });
            const gaps = [];
            for (let i = 1; i < rects.length; i++) {
                if (!rects[i - 1] || !rects[i]) continue;
                const [before, after] = [rects[i - 1][1], rects[i][0]];
                if (Math.abs(before.top - after.top) < 2) gaps.push(after.left - before.right);
            }
            return gaps;
        }""",
        selector,
    )


def outlined_token(page) -> str:
    """The token the token view outlines (the selected one)."""
    return page.locator('[data-testid="stMain"] span[style*="outline"]').first.inner_text()


def hover_heatmap_cell(page, chart_index: int, row: int, col: int) -> str:
    """Move the pointer onto cell (row, col) of the ``chart_index``-th chart; return the tooltip's text.

    The pointer goes to a corner of the cell (a quarter of the way from its
    centre to the next cell's), not to the marker's centre, so the whole cell
    is shown to answer. The tooltip is Plotly's hover label, read as drawn.
    """
    wait_until_settled(page)
    chart = page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').nth(chart_index)
    chart.scroll_into_view_if_needed()
    found = chart.evaluate(
        """async (plot, [row, col]) => {
            // A chart is redrawn when a run under load delivers it in parts: wait up to 10 s for the cell.
            for (let tries = 0; tries < 100 && !(plot._fullData || []).some(
                    t => Array.from(t.customdata || []).some(c => c && Number(c[0]) === row && Number(c[1]) === col));
                 tries++) await new Promise(done => setTimeout(done, 100));
            const layout = plot._fullLayout;
            const cell = [layout.xaxis._length / layout.xaxis._categories.length,
                          layout.yaxis._length / layout.yaxis._categories.length];
            for (const trace of plot._fullData) {
                const cells = Array.from(trace.customdata || []).map(cell => Array.from(cell || [], Number));
                const i = cells.findIndex(cell => cell[0] === row && cell[1] === col);
                if (i >= 0) return [plot._fullData.indexOf(trace), i, cell];
            }
            return null;
        }""",
        [row, col],
    )
    if found is None:
        raise ValueError(f"chart {chart_index} has no cell ({row}, {col})")
    trace_index, point_index, (width, height) = found
    return _hover(page, chart, trace_index - _non_scatter_traces(chart, trace_index), point_index,
                  (width / 4, height / 4))


def hover_point(page, chart_index: int, trace_index: int, point_index: int) -> str:
    """Move the pointer onto point ``point_index`` of the ``trace_index``-th trace of Plotly's scatter layer
    (scatter traces in drawing order) of the ``chart_index``-th chart; return the tooltip's text."""
    wait_until_settled(page)
    chart = page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').nth(chart_index)
    chart.scroll_into_view_if_needed()
    return _hover(page, chart, trace_index, point_index, (0, 0))


def _hover(page, chart, trace_index: int, point_index: int, offset: tuple[float, float]) -> str:
    """Plotly's hover label once the pointer rests ``offset`` pixels from the centre of a point, read as drawn."""
    point = chart.locator(".scatterlayer .trace").nth(trace_index).locator("path.point").nth(point_index)
    # To the middle of the window: a point just inside its top edge is under Streamlit's header, which gets the pointer.
    point.evaluate("point => point.scrollIntoView({block: 'center'})")
    box = point.bounding_box()
    target = (box["x"] + box["width"] / 2 + offset[0], box["y"] + box["height"] / 2 + offset[1])
    page.mouse.move(target[0] - 30, target[1] - 30)
    page.mouse.move(*target, steps=4)
    label = chart.locator(".hoverlayer .hovertext")
    label.first.wait_for(state="visible", timeout=5000)

    def read() -> str:
        # An SVG text: each line of the label is one tspan.line (or the text itself, for one line).
        return label.first.evaluate(
            """node => { const lines = [...node.querySelectorAll('text.nums tspan.line')];
                return lines.length ? lines.map(line => line.textContent).join('\\n') : node.textContent; }"""
        )

    # Plotly throttles hover: the label first drawn may be a cell the pointer passed on its way.
    shown = read()
    for _ in range(20):
        page.wait_for_timeout(100)
        now = read()
        if now == shown:
            return now
        shown = now
    return shown


# -------------------------------------------------- the saliency view (Figure 3)
SALIENCY_TOKENS = ".ecco-saliency-view .ecco-token"


def saliency_shading(page) -> np.ndarray:
    """The computed background of every token of the saliency view, shape (n_tokens, 4): r, g, b, alpha."""
    colours = page.locator(SALIENCY_TOKENS).evaluate_all(
        "spans => spans.map(span => getComputedStyle(span).backgroundColor)"
    )
    values = [[float(v) for v in re.findall(r"[\d.]+", colour)] for colour in colours]
    return np.array([v if len(v) == 4 else v + [1.0] for v in values])


def expected_saliency_shading(sal, row: int, *, signed: bool = False) -> np.ndarray:
    """What the view must show for explained token ``row``: each token's value over the row's largest as the
    alpha of the share colour (or of the signed pair), transparent where the token cannot be seen."""
    values = np.round(sal.signed_shares()[row] if signed else sal.scores[row], 4)
    values = np.where(sal.attributed_mask()[row], values, 0.0)
    strength = np.abs(values) / (np.abs(values).max() or 1.0)
    colours = {name: [float(c) for c in rgb.split(",")] for name, rgb in plots.SIGNED_COLORS.items()}
    share = [float(c) for c in plots.SHARE_COLOR.split(",")]
    rgb = np.array([colours["against"] if v < 0 else (colours["for"] if signed else share) for v in values])
    rgb[strength == 0] = 0.0  # "transparent" computes to rgba(0, 0, 0, 0)
    shading = np.column_stack([rgb, strength])
    shading[sal.positions[row]] = [255, 75, 75, 0.12]  # the explained token itself: a faint red
    return shading


def hover_saliency_token(page, position: int) -> dict:
    """Move the pointer onto the explained token at ``position``; return the re-shading times in ms.

    Measured in the page from the pointer event's own time stamp: ``styled``
    once the view's handler has run and the tokens' styles are recomputed,
    ``painted`` once the next frame after it has been drawn (two animation frames).
    """
    token = page.locator(f'.ecco-explained[data-position="{position}"]')
    token.scroll_into_view_if_needed()
    token.evaluate(
        """span => {
            window.eccoHoverTiming = null;
            span.addEventListener("mouseenter", event => {  // added after the view's own: runs after it
                for (const token of span.closest(".ecco-saliency-view").querySelectorAll(".ecco-token")) {
                    getComputedStyle(token).backgroundColor;
                }
                const styled = performance.now() - event.timeStamp;
                requestAnimationFrame(() => requestAnimationFrame(() => {
                    window.eccoHoverTiming = {styled, painted: performance.now() - event.timeStamp};
                }));
            }, {once: true});
        }"""
    )
    # The token's last line box: a token that starts with a space may wrap at it, and the middle of its bounding
    # box then lies between two lines, on another token.
    box = token.evaluate("span => { const boxes = span.getClientRects(); const box = boxes[boxes.length - 1];"
                         " return {x: box.x, y: box.y, width: box.width, height: box.height}; }")
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] - 40)  # start just above the text
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function("() => window.eccoHoverTiming !== null", timeout=5000)
    return page.evaluate("() => window.eccoHoverTiming")


# ------------------------------------------------------------------ the attention head view
HEAD_VIEW_LINES = """root => [...root.querySelectorAll("line")].map(line => [
    Number(line.dataset.query), Number(line.dataset.key), Number(line.closest("g").dataset.head),
    getComputedStyle(line).display !== "none" && getComputedStyle(line.closest("g")).display !== "none"
        && line.checkVisibility()])"""
HEAD_VIEW_SHADES = """root => Object.fromEntries([...root.querySelectorAll('.ecco-token[data-side="key"]')]
    .map(token => [token.dataset.position, getComputedStyle(token).backgroundColor]))"""


def view_payload(html_text: str):
    """The JSON an interactive view (saliency, head view) hands its inline script."""
    return json.loads(re.search(r'<script type="application/json">(.*?)</script>', html_text).group(1))


def head_view_lines(page) -> tuple[set, set]:
    """(query, key, head) of every line of the head view, and of those shown."""
    lines = page.locator(".ecco-head-view").evaluate(HEAD_VIEW_LINES)
    return {tuple(line[:3]) for line in lines}, {tuple(line[:3]) for line in lines if line[3]}


def expected_head_view_lines(shares, heads=None, query=None, key=None) -> set:
    """(query, key, head) of the lines a block's head view draws (share >= 0.01), optionally some only."""
    n_heads = shares.shape[0]
    found = set()
    for head in range(n_heads) if heads is None else heads:
        for q, k in zip(*np.nonzero(shares[head] >= 0.01)):
            if (query is None or q == query) and (key is None or k == key):
                found.add((int(q), int(k), head))
    return found
