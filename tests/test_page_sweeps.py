"""Every option of every select box and radio of each page, on the default model, through AppTest.

Each setting is changed on its own from the page's defaults and the page run
again: no exception, no error, and a chart drawn (or, where the page says
why there is none, that message). Widget interactions in a real browser are in
test_browser.py.
"""

import html
import json
import re

import numpy as np
import pytest

import ecco_core as ec
from apptest import assert_no_error, charts, figure_array, page, run
from ecco_core import similarity as sim
from ecco_core.layers import EMBEDDINGS

PASTED = "The keys to the cabinet are on the table.\nA second sentence, with a comma and a name: Paris."


# --------------------------------------------------------------- similarity
def assert_similarity_drawn(app, method: str) -> None:
    """A heatmap of this method, or (CCA family, too few positions) the reason and the CKA button."""
    assert_no_error(app)
    drawn = charts(app)
    if drawn:
        label = "CKA" if method == "cka" else method.upper()
        assert drawn[0]["layout"]["title"]["text"].startswith(label)
        return
    assert method != "cka"
    assert any("value is 1.00" in warning.value for warning in app.warning)
    assert app.button(key="similarity_use_cka").label == "Show CKA instead"


def test_similarity_every_method_kernel_and_representation():
    """Swept on the capture (the default source): a method reads the positions it is given, whichever source gave
    them; the other sources are run below."""
    app = page("pages/4_Similarity.py")
    run(app)
    for method in sim.METHODS:
        app.selectbox(key="similarity_method").set_value(method)
        run(app)
        assert_similarity_drawn(app, method)
        assert app.radio(key="similarity_source").value == "capture" and "similarity_source" not in app.query_params
    app.selectbox(key="similarity_method").set_value("cka")
    run(app)
    app.radio(key="similarity_kernel").set_value("rbf")
    run(app)
    assert_similarity_drawn(app, "cka")
    for rows, columns in (("ffn", "hidden"), ("hidden", "hidden"), ("ffn", "ffn")):
        app.selectbox(key="similarity_rows").set_value(rows)
        app.selectbox(key="similarity_columns").set_value(columns)
        run(app)
        assert_similarity_drawn(app, "cka")
        heatmap = charts(app)[0]["data"][0]
        assert heatmap["y"][:2] == sim.layer_labels(rows, 2) and heatmap["x"][:2] == sim.layer_labels(columns, 2)
    app.checkbox(key="similarity_skip_special").uncheck()
    run(app)
    assert_similarity_drawn(app, "cka")
    app.checkbox(key="similarity_skip_first").uncheck()
    run(app)
    assert_similarity_drawn(app, "cka")


@pytest.mark.parametrize("source", ["ud", "pasted"])
def test_similarity_every_other_source_with_cka_and_the_cca_family(source):
    app = page("pages/4_Similarity.py")
    app.session_state["similarity_n_sentences"] = 3
    app.session_state["similarity_pasted"] = PASTED
    run(app)
    app.radio(key="similarity_source").set_value(source)
    for method in ("cka", "pwcca"):
        app.selectbox(key="similarity_method").set_value(method)
        run(app)
        assert_similarity_drawn(app, method)
        assert app.query_params["similarity_source"] in (source, [source])


def test_similarity_settings_come_back_from_a_copied_link():
    app = page("pages/4_Similarity.py")
    for key, value in dict(similarity_method="svcca", similarity_keep="0.9", similarity_rows="ffn",
                           similarity_kernel="rbf", similarity_skip_special="false").items():
        app.query_params[key] = value
    run(app)
    assert app.selectbox(key="similarity_method").value == "svcca"
    assert app.slider(key="similarity_keep").value == 0.9
    assert app.selectbox(key="similarity_rows").value == "ffn"
    assert app.checkbox(key="similarity_skip_special").value is False
    assert_similarity_drawn(app, "svcca")


# ------------------------------------------------------------ neuron factors
FACTOR_TEXT = "The keys to the cabinet are on the table, and the cabinet is in the hall."


@pytest.mark.parametrize("method, negatives", [("nmf", "clip"), ("nmf", "split"), ("pca", "clip"), ("ica", "clip")])
def test_factors_every_method_and_negatives_option(method, negatives):
    app = page("pages/3_Neuron_factors.py")
    app.query_params.update({"text": FACTOR_TEXT, "new": "0", "factors_n": "4"})
    run(app)
    app.selectbox(key="factors_method").set_value(method)
    if method == "nmf":
        app.selectbox(key="factors_negatives").set_value(negatives)
    run(app)
    assert_no_error(app)
    views = [json.loads(view.proto.json)["html"] for view in app.get("bidi_component")
             if "ecco-factor-view" in view.proto.json]
    assert len(views) == 1 and views[0].count('class="ecco-spark"') == 4  # the Figure 9 view, one row per factor
    captions = " ".join(caption.value for caption in app.caption)
    assert f"{method.upper()} of {30 * 1536 * (2 if negatives == 'split' else 1)} neurons" in captions
    assert app.radio(key="factors_pick").options == ["F0", "F1", "F2", "F3"]
    for factor in range(4):
        app.radio(key="factors_pick").set_value(factor)
        run(app)
        assert_no_error(app)
        assert len(app.dataframe[0].value) == 10  # the neurons loading most on that factor
    assert charts(app)  # One neuron's bars


@pytest.mark.parametrize("checkbox", ["factors_skip_special", "factors_skip_first"])
def test_factors_each_skip_checkbox_and_a_block_range(checkbox):
    app = page("pages/3_Neuron_factors.py")
    app.query_params.update({"text": FACTOR_TEXT, "new": "0", "factors_n": "4"})
    run(app)
    app.checkbox(key=checkbox).uncheck()
    app.slider(key="factors_layers").set_value((3, 5))
    run(app)
    assert_no_error(app)
    captions = " ".join(caption.value for caption in app.caption)
    assert "NMF of 4608 neurons of block 3 FFN to block 5 FFN" in captions
    assert app.query_params[checkbox] in ("false", ["false"])
    assert charts(app)
    app.toggle(key="factors_quality").set_value(True)  # how far to trust them (#30), on these three blocks
    run(app)
    assert_no_error(app)
    assert app.dataframe[1].value["method"].tolist() == ["NMF (non-negative)", "PCA", "ICA (FastICA)"]


def test_factors_one_neuron_ranks_on_every_token():
    app = page("pages/3_Neuron_factors.py")
    app.query_params.update({"text": FACTOR_TEXT, "new": "0", "factors_n": "4"})
    run(app)
    rank_on = next(box for box in app.selectbox if box.label == "Rank the FFN's neurons on")
    assert rank_on.options[0] == "all tokens (peak)"
    for option in rank_on.options:
        next(box for box in app.selectbox if box.label == "Rank the FFN's neurons on").set_value(
            rank_on.options.index(option) - 1)  # -1: all tokens
        run(app)
        assert_no_error(app)
        assert charts(app)
        table = app.dataframe[-1].value
        column = "peak |activation|" if option == "all tokens (peak)" else "|activation|"
        assert len(table) == 10 and table[column].is_monotonic_decreasing


# ------------------------------------------------------------------ probing
def _probe_button(app):
    return next(button for button in app.button if button.label == "Run probes")


def test_probing_quick_preset_is_the_default_and_runs(lm):
    app = run(page("pages/5_Probing.py"))
    assert app.radio(key="probe_preset").value == "quick"
    assert app.number_input(key="probe_tokens").value == 2000 and app.slider(key="probe_trials").value == 1
    assert app.number_input(key="probe_epochs").value == 20
    layers = app.multiselect(key="probe_layers").value
    assert layers[0] == EMBEDDINGS and len(layers) == 9 and layers[-1] == str(lm.n_layers - 1)
    assert any("on this machine" in caption.value for caption in app.caption)  # the estimate, before running
    _probe_button(app).click()
    run(app, timeout=600)
    assert_no_error(app)
    assert len(charts(app)) == 2 and len(app.dataframe[0].value) == 1 + 2 * 8
    assert app.query_params["probe_ran"] in ("true", ["true"])
    assert "probe_preset" not in app.query_params  # the default


def test_probing_paper_preset_is_one_click_away_and_comes_back_from_a_link(lm):
    app = run(page("pages/5_Probing.py"))
    quick = next(c.value for c in app.caption if "on this machine" in c.value)
    app.radio(key="probe_preset").set_value("paper")
    run(app)
    assert app.number_input(key="probe_tokens").value == 10_000 and app.slider(key="probe_trials").value == 5
    assert app.number_input(key="probe_epochs").value == 50
    assert len(app.multiselect(key="probe_layers").value) == 1 + lm.n_layers
    paper = next(c.value for c in app.caption if "on this machine" in c.value)
    assert paper != quick and "min" in paper  # announced before anything runs
    assert not charts(app)
    linked = page("pages/5_Probing.py")
    linked.query_params["probe_preset"] = "paper"
    run(linked)
    assert linked.number_input(key="probe_tokens").value == 10_000


@pytest.mark.parametrize("rate", ["0.001", "0.1", "0.00001", "best"])
def test_probing_every_learning_rate_on_a_small_custom_run(encoder, rate):
    app = page("pages/5_Probing.py")
    app.query_params.update({"model": ec.DEFAULT_ENCODER, "probe_preset": "custom", "probe_tokens": "150",
                             "probe_trials": "1", "probe_epochs": "2", "probe_lr": rate})
    app.query_params["probe_layers"] = [EMBEDDINGS, "0"]
    run(app)
    assert app.selectbox(key="probe_lr").value == rate
    _probe_button(app).click()
    run(app)
    assert_no_error(app)
    assert len(charts(app)) == 2
    caption = next(c.value for c in app.caption if "learning rate" in c.value)
    shown = float(re.search(r"learning rate ([0-9.e-]+?)\. ", caption).group(1))
    assert shown in {"0.001": [1e-3], "0.1": [0.1], "0.00001": [1e-5], "best": [0.1, 1e-3, 1e-5]}[rate]


# --------------------------------------------------------------------- home
def test_home_every_example_and_every_packaged_model():
    app = run(page("Home.py"))
    assert charts(app)  # the next-token heatmap of the default run
    examples = [button.key for button in app.button if button.key and button.key.startswith("home_example_")]
    assert len(examples) >= 5  # one per view
    for key in examples:
        app.button(key=key).click()
        run(app)
        assert_no_error(app)
        assert app.dataframe[0].value["token"].str.len().sum() > 0
        if app.query_params["model"] in (ec.DEFAULT_MODEL, [ec.DEFAULT_MODEL]):
            heatmap = charts(app)[0]["data"][0]
            # Cells write their candidate only where at least 4 characters fit a 1400 px window; else the hover.
            n_tokens = len(app.dataframe[0].value)
            assert len(heatmap["y"]) == 5 and ("text" in heatmap) == (n_tokens <= 690 // (8 * 4))
            cells = [html.unescape(cell) for row in heatmap.get("text", []) for cell in row]
            assert all(len(cell) <= 690 // (8 * n_tokens) for cell in cells)
    for model in ec.offline_models():
        app.sidebar.selectbox(key="_model_choice").set_value(model)
        app.sidebar.button[0].click()
        run(app)
        assert_no_error(app)
        assert app.query_params["model"] in (model, [model])


# -------------------------------------------------------- layer predictions
def test_layer_predictions_every_token_and_typed_and_suggested_candidates(lm):
    app = run(page("pages/2_Layer_predictions.py"))
    token = app.selectbox(key="lens_token")
    for option in range(len(token.options)):
        app.selectbox(key="lens_token").set_value(option)
        run(app)
        assert_no_error(app)
        assert charts(app)[1]["layout"]["title"]["text"].startswith("Probability of")
    app.text_area(key="watch_text").set_value("The keys to the cabinet")
    app.text_input(key="watch_words").set_value("is, are, ?")
    run(app)
    assert_no_error(app)
    assert charts(app)[2]["data"][0]["x"] == ["is", "are", "?"]  # typed alone: punctuation too
    chips = app.get("button_group")[0]
    suggestions = ec.suggest_candidates(lm, "The keys to the cabinet", k=3).to_frame()["token_id"].tolist()
    for token_id in suggestions:  # each suggestion alone beside the typed words
        app.get("button_group")[0].set_value([token_id])
        run(app)
        assert_no_error(app)
        assert len(charts(app)[2]["data"][0]["x"]) == 4
    app.get("button_group")[0].set_value(suggestions)
    app.text_input(key="watch_words").set_value("")
    run(app)
    assert len(charts(app)[2]["data"][0]["x"]) == len(chips.options)  # suggestions alone


# ----------------------------------------------------------------- circuits
def test_circuits_every_control_a_head_and_verification_by_patching(lm):
    app = page("pages/8_Circuits.py")
    app.query_params.update({"text": "The capital of France is", "new": "1"})  # the sidebar's own run, short
    run(app)
    assert_no_error(app)
    assert app.selectbox(key="circuits_example").value == "names"
    assert "logit difference &#39; Mary&#39; - &#39; John&#39;" in charts(app)[0]["layout"]["title"]["text"]
    routes = [element.proto.body for element in app.get("html") if "ecco-routes" in element.proto.body]
    assert len(routes) == 1 and "circuits_head" not in app.query_params
    assert app.radio(key="circuits_ablation").value == "corrupted"
    assert "Mary gave" in app.text_input(key="circuits_corrupted").value

    app.session_state["circuits_head"] = "23,3"  # what a click on the head's cell sets
    run(app)
    assert_no_error(app)
    assert [header.value for header in app.subheader][1] == "block 23 head 3"
    assert charts(app)[1]["layout"]["title"]["text"] == "block 23, head 3: raw weights"
    sources = charts(app)[2]
    assert sources["layout"]["title"]["text"] == "What block 23 head 3 writes, by source token"
    assert len(figure_array(sources["data"][0]["y"])) == 14  # one bar per token of the IOI prompt
    assert app.query_params["circuits_head"] in ("23,3", ["23,3"])
    app.button(key="circuits_close").click()
    run(app)
    assert "circuits_head" not in app.query_params and len(charts(app)) == 1

    app.selectbox(key="circuits_example").set_value("fact")
    run(app)
    assert_no_error(app)
    assert app.text_input(key="circuits_prompt").value == "The Eiffel Tower is located in the city of"
    assert "logit of &#39; Paris&#39;" in charts(app)[0]["layout"]["title"]["text"]
    assert app.radio(key="circuits_ablation").value == "mean"

    # Corrupted ablation, a prompt of another length: refused in the words of its control.
    app.toggle(key="circuits_exact").set_value(False)
    app.number_input(key="circuits_k").set_value(5)
    app.radio(key="circuits_ablation").set_value("corrupted")
    run(app)
    app.text_input(key="circuits_corrupted").set_value("The Colosseum is")
    app.button(key="circuits_verify_button").click()
    run(app)
    assert any("as many tokens" in error.value for error in app.error)
    app.text_input(key="circuits_corrupted").set_value("")
    app.button(key="circuits_verify_button").click()
    run(app)
    assert any("The corrupted prompt is empty" in error.value for error in app.error)

    # Every part alone on a short prompt: DLA's and the routes graph's rankings checked, the scatter, the link.
    app.radio(key="circuits_ablation").set_value("mean")
    app.toggle(key="circuits_exact").set_value(True)
    app.text_input(key="circuits_prompt").set_value("Paris is in")
    app.text_input(key="circuits_answer").set_value("France")
    app.text_input(key="circuits_foil").set_value("Spain")
    run(app)
    app.button(key="circuits_verify_button").click()
    run(app, timeout=600)
    assert_no_error(app)
    assert any("the value goes from" in element.value for element in app.markdown)
    rankings = next(frame.value for frame in app.dataframe if "ranking" in frame.value)
    assert rankings["ranking"].tolist() == ["DLA's top 5", "The routes graph's (threshold 0.04) top 5"]
    assert rankings["recall of the exact top 5"].between(0, 1).all()
    scatter = charts(app)[-1]
    assert scatter["layout"]["xaxis"]["title"]["text"].startswith("direct logit attribution")
    assert sum(len(figure_array(trace["x"])) for trace in scatter["data"][:2]) == lm.n_layers * (lm.n_heads + 1)
    assert len(figure_array(scatter["data"][2]["x"])) == 5  # the routes graph's top 5
    ranks = app.dataframe[-1].value
    assert {"rank", "route_rank", "exact_rank"} <= set(ranks.columns)
    assert app.query_params["circuits_verify"] in ("true", ["true"])
    assert app.query_params["circuits_k"] in ("5", ["5"])

    app.text_input(key="circuits_answer").set_value(" ")
    run(app)
    assert [error.value for error in app.error] == ["The answer is empty; type the word the prompt leads to, e.g. Mary"]


# ----------------------------------------------------------------- saliency
def _faithfulness_bars(app) -> list[dict]:
    return [chart for chart in charts(app)
            if chart["layout"].get("yaxis", {}).get("title", {}).get("text", "").startswith("AOPC")]


def test_saliency_faithfulness_check_on_and_off_and_from_a_link():
    """#30: the check's box comes back from a copied link, draws each method beside random and the agreement
    table, offers its own downloads, and unchecked draws none of it."""
    app = page("pages/1_Saliency.py")
    app.query_params.update({"text": "The capital of France is", "new": "2", "saliency_faithfulness": "true"})
    run(app)
    assert_no_error(app)
    assert app.checkbox(key="saliency_faithfulness").value is True
    bars = _faithfulness_bars(app)
    assert len(bars) == 1 and [trace["name"].split()[0] for trace in bars[0]["data"]] == [
        "comprehensiveness", "sufficiency"]
    assert bars[0]["data"][0]["x"] == [*ec.SALIENCY_METHODS, "random (10)"]
    agreement = app.dataframe[-1].value
    assert list(agreement.index) == list(ec.SALIENCY_METHODS) and (np.diag(agreement) == 1).all()
    stem = f"saliency_faithfulness_prob_{app.selectbox(key='saliency_token').value}"
    assert {f"{stem}_csv", f"{stem}_json"} <= {button.key for button in app.get("download_button")}
    app.checkbox(key="saliency_faithfulness").uncheck()
    run(app)
    assert_no_error(app)
    assert "saliency_faithfulness" not in app.query_params
    assert not _faithfulness_bars(app)
