"""The Similarity page, through Streamlit's AppTest (the library is tested in test_similarity.py)."""

from apptest import charts, page, run
from ecco_core import similarity as sim


def _heatmap(app):
    spec = charts(app)[0]
    return spec["data"][0], spec["layout"]["title"]["text"]


def test_page_shows_figure_6_for_the_capture_and_for_ud_sentences(lm):
    app = run(page("pages/4_Similarity.py"))
    assert app.title[0].value == "Representation similarity"
    cells, title = _heatmap(app)
    assert cells["y"] == ["embeddings"] + [f"block {block}" for block in range(lm.n_layers)]
    assert cells["x"] == [f"block {block} FFN" for block in range(lm.n_layers)]
    layout = charts(app)[0]["layout"]
    assert (layout["yaxis"]["title"]["text"], layout["xaxis"]["title"]["text"]) == ("hidden states", "FFN activations")
    assert len(cells["text"]) == lm.n_layers + 1 and all(0 <= float(v) <= 1 for v in cells["text"][0])
    assert title.startswith("CKA (linear)")
    assert {"CSV", "JSON"} <= {button.label for button in app.get("download_button")}

    app.radio(key="similarity_source").set_value("ud")
    app.selectbox(key="similarity_method").set_value("cca")
    app.session_state["similarity_n_sentences"] = 4  # set before the widget first appears
    run(app)
    # 4 sentences: fewer positions than FFN dimensions, so every canonical correlation is 1. Not drawn.
    assert not app.get("plotly_chart")
    assert any("Every CCA value is 1.00" in warning.value for warning in app.warning)
    app.button(key="similarity_use_cka").click()
    run(app)
    n_positions = sum(len(lm.tokenizer(text)["input_ids"]) for text in sim.ud_sentences(4))
    assert _heatmap(app)[1] == f"CKA (linear) similarity over {n_positions} token positions"
    assert app.query_params["similarity_source"] in ("ud", ["ud"])
    assert "similarity_method" not in app.query_params  # the default


def test_page_says_before_the_run_whether_the_cca_family_can_leave_saturation_and_proposes_a_setting(lm):
    """#31 item 7: PWCCA over 40 UD sentences ran ~4 min to an all-1 matrix. The page now says first that these
    positions cannot leave saturation (positions vs the two ranks) and proposes the fewest sentences that can."""
    app = page("pages/4_Similarity.py")
    app.session_state["similarity_n_sentences"] = 2  # the cheapest run that saturates: CCA over 2 sentences
    run(app)
    app.radio(key="similarity_source").set_value("ud")
    app.selectbox(key="similarity_method").set_value("cca")
    run(app)
    warnings = [warning.value for warning in app.warning]
    verdict = next(index for index, text in enumerate(warnings) if "CCA cannot leave saturation" in text)
    assert verdict < next(index for index, text in enumerate(warnings) if "Every CCA value is 1.00" in text)
    needed = sim.ud_sentences_for(lm, lm.d_ff + 2, most=200)
    assert f"{lm.d_ff + 2:,} positions to leave saturation" in warnings[verdict]
    assert f"The smallest setting that can: {needed} UD sentences" in warnings[verdict]
    assert app.button(key="similarity_use_sentences").label == f"Use {needed} UD sentences"
    app.selectbox(key="similarity_method").set_value("cka")
    run(app)
    assert not any("saturation" in warning.value for warning in app.warning)
