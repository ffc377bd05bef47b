"""The Similarity page, through Streamlit's AppTest (the library is tested in test_similarity.py)."""

import ecco_core as ec
from apptest import charts, page, run
from ecco_core import similarity as sim
from ecco_core.models import cache_dir
from ecco_core.store import store_root


def _heatmap(app):
    spec = charts(app)[0]
    return spec["data"][0], spec["layout"]["title"]["text"]


def assert_chance_beside_the_matrix(app):
    """Beside the matrix (#30): the median cell's score against its shuffled positions; the score is the cell's."""
    cells, _ = _heatmap(app)
    chance = charts(app)[1]
    pair = chance["layout"]["title"]["text"].removeprefix("Chance: ")
    row, column = pair.split(" vs ")
    caption = next(c.value for c in app.caption if c.value.startswith("The median cell, "))
    score = cells["text"][cells["y"].index(row)][cells["x"].index(column)]
    assert caption.startswith(f"The median cell, {pair}: {score}; with one side's token positions shuffled (100 times)")
    assert sorted(float(v) for line in cells["text"] for v in line)[len(cells["x"]) * len(cells["y"]) // 2] == float(score)
    assert chance["data"][0]["type"] == "histogram" and chance["layout"]["height"] < charts(app)[0]["layout"]["height"]


def test_page_shows_figure_6_for_the_capture_and_for_ud_sentences(lm, tmp_path, monkeypatch):
    app = run(page("pages/4_Similarity.py"))
    assert app.title[0].value == "Representation similarity"
    cells, title = _heatmap(app)
    assert cells["y"] == ["embeddings"] + [f"block {block}" for block in range(lm.n_layers)]
    assert cells["x"] == [f"block {block} FFN" for block in range(lm.n_layers)]
    layout = charts(app)[0]["layout"]
    assert (layout["yaxis"]["title"]["text"], layout["xaxis"]["title"]["text"]) == ("hidden states", "FFN activations")
    assert len(cells["text"]) == lm.n_layers + 1 and all(0 <= float(v) <= 1 for v in cells["text"][0])
    assert title.startswith("CKA (linear)")
    # The selects name methods and representations as the chart and its axes do (#31 item 15), not by key.
    assert app.selectbox(key="similarity_method").options == ["CKA", "PWCCA", "SVCCA", "CCA"]
    assert app.selectbox(key="similarity_rows").options == ["hidden states", "FFN activations"]
    assert {"CSV", "JSON"} <= {button.label for button in app.get("download_button")}
    assert_chance_beside_the_matrix(app)

    app.radio(key="similarity_source").set_value("ud")
    app.selectbox(key="similarity_method").set_value("cca")
    app.session_state["similarity_n_sentences"] = 4  # set before the widget first appears
    run(app)
    # 4 sentences: fewer positions than FFN dimensions, so every canonical correlation is 1. Not drawn.
    assert not app.get("plotly_chart")
    assert any("Every CCA value is 1.00" in warning.value for warning in app.warning)
    app.button(key="similarity_use_cka").click()
    stores = store_root().relative_to(cache_dir())
    monkeypatch.setenv("ECCO_EXPLORER_CACHE", str(tmp_path))  # the model is loaded already: only stores go there
    run(app)
    # Texts keep their layers on disk whatever their length (#31 item 18): in memory, 40 UD sentences took a run
    # to +632 MiB, and up to 1 GiB of layers would stay there.
    assert (tmp_path / stores).is_dir()
    # Each sentence's first token is left out on this causal model (#31: it is an attention sink).
    n_positions = sum(len(lm.tokenizer(text)["input_ids"]) - 1 for text in sim.ud_sentences(4))
    assert _heatmap(app)[1] == f"CKA (linear) similarity over {n_positions} token positions"
    assert_chance_beside_the_matrix(app)  # the pooled sentences' cell, from one more pass keeping its two layers
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
    needed = sim.ud_sentences_for(lm, lm.d_ff + 2, skip_first=True, most=200)  # the page leaves out first tokens (#31)
    assert f"{lm.d_ff + 2:,} positions to leave saturation" in warnings[verdict]
    compared = sim.positions_compared(lm, sim.ud_sentences(2), skip_first=True)  # first tokens are no samples
    assert warnings[verdict].startswith(f"CCA cannot leave saturation here: {compared:,} token positions")
    assert f"The smallest setting that can: {needed} UD sentences" in warnings[verdict]
    assert app.button(key="similarity_use_sentences").label == f"Use {needed} UD sentences"
    app.selectbox(key="similarity_method").set_value("cka")
    run(app)
    assert not any("saturation" in warning.value for warning in app.warning)


def test_the_attention_sink_is_left_out_by_default_on_a_causal_model_and_a_link_keeps_the_choice(lm):
    app = run(page("pages/4_Similarity.py"))
    assert app.checkbox(key="similarity_skip_first").value is True
    assert any("attention sink" in caption.value for caption in app.caption)  # the page says why
    cells, title = _heatmap(app)
    without = int(title.split(" over ")[1].split()[0])
    assert float(cells["text"][16][28]) < 0.99  # block 15's output against block 28's FFN
    app.checkbox(key="similarity_skip_first").uncheck()
    run(app)
    cells, title = _heatmap(app)
    assert int(title.split(" over ")[1].split()[0]) == without + 1
    assert float(cells["text"][16][28]) > 0.99  # the sink alone makes the two alike
    assert app.query_params["similarity_skip_first"] in ("false", ["false"])
    linked = page("pages/4_Similarity.py")
    linked.query_params["similarity_skip_first"] = "false"
    run(linked)
    assert linked.checkbox(key="similarity_skip_first").value is False


def test_an_encoder_keeps_its_first_token(encoder):
    app = page("pages/4_Similarity.py")
    app.query_params.update({"model": ec.DEFAULT_ENCODER, "text": "The keys to the cabinet are on the table."})
    run(app)
    assert app.checkbox(key="similarity_skip_first").value is False  # [CLS] goes with the special tokens
    assert not any("attention sink" in caption.value for caption in app.caption)


def test_a_pasted_line_longer_than_the_models_context_is_named_by_its_line(encoder):
    app = page("pages/4_Similarity.py")
    app.query_params.update({"model": ec.DEFAULT_ENCODER, "text": "The keys.", "similarity_source": "pasted",
                             "similarity_pasted": "A short line.\n" + "word " * 600})
    run(app)
    errors = " ".join(error.value for error in app.error)
    assert "Line 2 of the texts is" in errors and "512" in errors and "texts[" not in errors
    assert not app.get("plotly_chart")

