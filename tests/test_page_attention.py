"""The Attention page, through Streamlit's AppTest and in Chromium (the library is tested in test_attention.py)."""

import numpy as np
import pytest

import ecco_core as ec
from apptest import charts, page, run
from browser import view_payload
from browser import HEAD_VIEW_SHADES, expected_head_view_lines, head_view_lines
from ecco_core import plots
from ecco_core.tokens import encode_prompt


PAGE = "pages/7_Attention.py"
PAGE_TEXTS = {"lm": ("William Shakespeare was born in the year", 20),
              "encoder": ("The keys to the cabinet are on the table.", 0)}


def _charts(app):
    """The page's model view and heatmap, as Plotly specs."""
    model_view, heatmap = charts(app)
    return model_view, heatmap


def _head_view(app):
    return next(element.proto.body for element in app.get("html") if "ecco-head-view" in element.proto.body)


def _param(app, key):
    value = app.query_params.get(key)
    return value[0] if isinstance(value, list) else value


@pytest.mark.parametrize("which", ["lm", "encoder"])
def test_page_sweeps_every_method_block_and_head(which, request):
    """Every option of Scores, the first and last block and head of each: the page shows the library's numbers."""
    model = request.getfixturevalue(which)
    text, new = PAGE_TEXTS[which]
    cap = ec.capture(model, text, max_new_tokens=new)
    app = page(PAGE)
    app.query_params.update({"model": model.name, "text": text, "new": str(new)})
    run(app)
    assert app.title[0].value == "Attention"
    assert app.selectbox(key="attention_method").options == [entry.title for entry in ec.ATTENTION_METHODS.values()]
    assert {"CSV", "JSON", "HTML", "Head view (HTML, works offline)"} <= {
        button.label for button in app.get("download_button")
    }
    for method in ec.ATTENTION_METHODS:
        app.selectbox(key="attention_method").set_value(method)
        run(app)
        expected = ec.attention(model, cap, method)
        shares = expected.normalised()
        assert len(app.selectbox(key="attention_block").options) == model.n_layers
        head_key = "attention_one_map" if expected.n_heads == 1 else "attention_head"
        assert len(app.selectbox(key=head_key).options) == expected.n_heads
        assert app.selectbox(key=head_key).disabled == (method == "rollout")
        for block in (0, model.n_layers - 1):
            for head in sorted({0, expected.n_heads - 1}):
                app.selectbox(key="attention_block").set_value(block)
                if expected.n_heads > 1:
                    app.selectbox(key="attention_head").set_value(head)
                run(app)
                model_view, heatmap = _charts(app)
                assert heatmap["layout"]["title"]["text"] == (
                    f"block {block}, {expected.heads[head]}: {ec.ATTENTION_METHODS[method].title}"
                )
                score = expected.map(block, head)[cap.n_tokens - 1, 1]
                hover = heatmap["data"][1]["hovertext"][-cap.n_tokens + 1].split("<br>")  # last query, key 1
                assert hover[1].startswith("key 1: ") and f" {score:.3f}" in hover[2]
                assert len(model_view["data"][1]["customdata"]) == model.n_layers * expected.n_heads
                outline, layout = model_view["layout"]["shapes"][0], model_view["layout"]
                rows, columns = layout["yaxis"]["tickvals"], layout["xaxis"]["tickvals"]
                assert outline["y0"] < rows[block] < outline["y1"] < outline["y0"] + 2 * (rows[1] - rows[0])
                assert outline["x0"] < columns[head] < outline["x1"]
                view = _head_view(app)
                assert f"block {block}, {ec.ATTENTION_METHODS[method].title}" in view
                queries, keys, weights = view_payload(view)["lines"][head]
                np.testing.assert_allclose(
                    weights, np.round(shares[block, head][queries, keys], 3), atol=1.5e-3
                )
                assert _param(app, "attention_block") == (None if block == 0 else str(block))
                if expected.n_heads > 1:
                    assert _param(app, "attention_head") == (None if head == 0 else str(head))
                assert _param(app, "attention_method") == (None if method == "raw" else method)
                assert not app.error


def test_a_link_with_attention_settings_reopens_the_same_view(encoder):
    app = page(PAGE)
    text, _ = PAGE_TEXTS["encoder"]
    app.query_params.update({"model": encoder.name, "text": text, "attention_method": "value_weighted",
                             "attention_block": "4", "attention_head": "11"})
    run(app)
    assert app.selectbox(key="attention_method").value == "value_weighted"
    assert (app.selectbox(key="attention_block").value, app.selectbox(key="attention_head").value) == (4, 11)
    assert _charts(app)[1]["layout"]["title"]["text"] == "block 4, head 11: value-weighted"
    assert "Computed on this machine." in [caption.value for caption in app.caption]  # as on every page (#28)
    app.selectbox(key="attention_method").set_value("rollout")  # one map per block: the head is kept aside
    run(app)
    assert app.selectbox(key="attention_one_map").options == ["mean of heads"]
    assert app.selectbox(key="attention_one_map").disabled
    assert _charts(app)[1]["layout"]["title"]["text"] == "block 4, mean of heads: rollout"
    assert _param(app, "attention_head") == "11"  # a link of this view still holds the chosen head
    app.selectbox(key="attention_method").set_value("raw")  # and it comes back with a per-head method
    run(app)
    assert app.selectbox(key="attention_head").value == 11 and _param(app, "attention_head") == "11"
    assert _charts(app)[1]["layout"]["title"]["text"] == "block 4, head 11: raw weights"


def test_a_long_prompt_computes_only_the_blocks_on_screen(lm):
    """At 400+ tokens all 30 blocks exceed the page's 64 MiB: the model view shows a window of blocks."""
    from dashboard import settings

    text = " ".join([PAGE_TEXTS["lm"][0] + " in Stratford-upon-Avon, where he went to school."] * 22)
    n_tokens = len(encode_prompt(lm, text))  # as the page's capture reads it, without running the model
    per_block = lm.n_heads * n_tokens**2 * 4
    n_shown = settings.ATTENTION_MB * 2**20 // per_block
    assert 400 < n_tokens <= settings.MAX_PROMPT_TOKENS and 1 < n_shown < lm.n_layers
    app = page(PAGE)
    app.query_params.update({"text": text, "new": "0"})
    run(app)
    starts = app.selectbox(key="attention_from")
    assert starts.options[-1] == f"block {lm.n_layers - n_shown}" and starts.value == 0
    assert _charts(app)[0]["layout"]["yaxis"]["ticktext"] == [f"block {b}" for b in range(n_shown)]
    starts.set_value(20)
    run(app)
    shown = [f"block {b}" for b in range(20, 20 + n_shown)]
    assert _charts(app)[0]["layout"]["yaxis"]["ticktext"] == shown
    assert app.selectbox(key="attention_block").options == shown and app.selectbox(key="attention_block").value == 20
    assert _param(app, "attention_from") == "20"
    heatmap = _charts(app)[1]["data"]  # no marker per cell: Plotly's own hover, with the same text
    assert len(heatmap) == 1 and heatmap[0]["hovertemplate"].startswith("query %{y}<br>key %{x}<br>weight %{z:.3f}")
    app.selectbox(key="attention_method").set_value("rollout")  # one map per block: every block fits
    run(app)
    assert len(app.selectbox(key="attention_block").options) == lm.n_layers
    assert "attention_from" not in [selectbox.key for selectbox in app.selectbox]


@pytest.mark.browser
def test_page_in_chromium_hover_toggle_tooltip_and_click(page, app_url, lm):
    from browser import (assert_healthy, chart_title, click_heatmap_cell, download_csv, hover_heatmap_cell,
                         open_app, screenshot, selectbox_value, wait_for_charts)

    text, new = PAGE_TEXTS["lm"]
    cap = ec.capture(lm, text, max_new_tokens=new)
    att = ec.attention(lm, cap)
    shares = att.normalised()
    open_app(page, app_url, "Attention", text=text, new=new)
    assert_healthy(page)
    wait_for_charts(page, 2)
    page.wait_for_selector(".ecco-head-view line", state="attached")
    screenshot(page, "7_Attention")
    every, shown = head_view_lines(page)
    assert every == shown == expected_head_view_lines(shares[0])

    # Hovering a query token leaves its own lines alone, and shades the keys it reads.
    query = 8
    page.locator(f'.ecco-token[data-side="query"][data-position="{query}"]').hover()
    assert head_view_lines(page)[1] == expected_head_view_lines(shares[0], query=query)
    shaded = page.locator(".ecco-head-view").evaluate(HEAD_VIEW_SHADES)
    read = {k for _, k, _ in expected_head_view_lines(shares[0], query=query)}
    assert {int(p) for p, colour in shaded.items() if colour != "rgba(0, 0, 0, 0)"} == read
    assert max(read) == query  # causal: nothing after the query
    screenshot(page, "7_Attention_hover_query")
    # A key token: the lines into it.
    page.locator('.ecco-token[data-side="key"][data-position="2"]').hover()
    assert head_view_lines(page)[1] == expected_head_view_lines(shares[0], key=2)
    page.mouse.move(5, 5)
    assert head_view_lines(page)[1] == every

    # Heads are coloured layers: a click hides one, a double click shows one alone.
    toggle = page.locator('.ecco-head-toggle[data-head="3"]')
    toggle.click()
    assert head_view_lines(page)[1] == every - expected_head_view_lines(shares[0], heads=[3])
    assert toggle.evaluate("node => getComputedStyle(node).opacity") == "0.25"
    page.locator('.ecco-head-toggle[data-head="5"]').dblclick()
    assert head_view_lines(page)[1] == expected_head_view_lines(shares[0], heads=[5])
    page.locator(f'.ecco-token[data-side="query"][data-position="{query}"]').hover()
    assert head_view_lines(page)[1] == expected_head_view_lines(shares[0], heads=[5], query=query)
    screenshot(page, "7_Attention_one_head")

    # The heatmap's tooltip names both tokens and the weight.
    labels = plots.axis_labels(cap.tokens)
    tooltip = hover_heatmap_cell(page, 1, row=query, col=2)
    assert tooltip == f"query {labels[query]}\nkey {labels[2]}\nweight {att.map(0, 0)[query, 2]:.3f}"

    # Clicking a map of the model view opens that head everywhere.
    click_heatmap_cell(page, 0, row=12, col=4)
    assert_healthy(page)
    assert (selectbox_value(page, "Block"), selectbox_value(page, "Head")) == ("block 12", "head 4")
    assert "attention_block=12" in page.url and "attention_head=4" in page.url
    assert chart_title(page, 1) == "block 12, head 4: raw weights"
    page.wait_for_function("() => document.querySelector('.ecco-head-view').textContent.includes('block 12,')")
    page.wait_for_selector(".ecco-head-view line", state="attached")
    assert head_view_lines(page)[1] == expected_head_view_lines(shares[12])
    frame = download_csv(page, "CSV")
    expected = att.to_frame(layers=[12])
    assert (frame["block"] == 12).all() and len(frame) == len(expected)
    np.testing.assert_allclose(frame["score"], expected["score"], atol=1e-5)
    assert_healthy(page)


@pytest.mark.browser
def test_page_in_chromium_on_the_encoder(page, app_url, encoder):
    from browser import assert_healthy, hover_heatmap_cell, open_app, screenshot, wait_for_charts

    text, _ = PAGE_TEXTS["encoder"]
    cap = ec.capture(encoder, text)
    att = ec.attention(encoder, cap, "value_weighted", layers=[3])
    open_app(page, app_url, "Attention", model=encoder.name, text=text, attention_method="value_weighted",
             attention_block=3, attention_head=7)
    assert_healthy(page)
    wait_for_charts(page, 2)
    page.wait_for_selector(".ecco-head-view line", state="attached")
    screenshot(page, "7_Attention_encoder")
    assert page.locator(".ecco-head-toggle").count() == encoder.n_heads == 12
    tokens = page.locator('.ecco-token[data-side="query"]').all_inner_texts()
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and len(tokens) == cap.n_tokens
    page.locator('.ecco-token[data-side="key"][data-position="0"]').hover()
    assert head_view_lines(page)[1] == expected_head_view_lines(att.normalised()[0], key=0)
    labels = plots.axis_labels(cap.tokens)
    score = att.map(3, 7)[4, 2]
    share = att.normalised()[0, 7, 4, 2]
    assert hover_heatmap_cell(page, 1, row=4, col=2) == (
        f"query {labels[4]}\nkey {labels[2]}\n\u2016\u03b1 f(x)\u2016 {score:.3f} ({share:.1%} of the row)"
    )


@pytest.mark.browser
def test_the_chosen_head_comes_back_after_a_method_with_one_map(page, app_url):
    """Head 3 -> rollout -> raw: the Head select shows head 3 again, and so does the map (not "mean of heads")."""
    from browser import (assert_healthy, chart_title, open_app, screenshot, selectbox_value, wait_for_charts,
                         wait_for_run)

    def pick(label, option):
        page.locator('[data-testid="stMain"]').get_by_role("combobox", name=label, exact=True).click()
        page.get_by_role("option", name=option, exact=True).click()
        wait_for_run(page)
        wait_for_charts(page, 2)

    open_app(page, app_url, "Attention", text="The keys to the cabinet", new=0)
    wait_for_charts(page, 2)
    pick("Head", "head 3")
    pick("Scores", "rollout")
    assert (selectbox_value(page, "Head"), chart_title(page, 1)) == ("mean of heads", "block 0, mean of heads: rollout")
    pick("Scores", "raw weights")
    assert_healthy(page)
    assert (selectbox_value(page, "Head"), chart_title(page, 1)) == ("head 3", "block 0, head 3: raw weights")
    assert "attention_head=3" in page.url
    screenshot(page, "7_Attention_head_after_rollout")
