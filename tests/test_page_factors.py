"""The Neuron factors page, through Streamlit's AppTest (the library is tested in test_factors.py)."""

import re

import pytest

import ecco_core as ec
from apptest import page, run

TEXT = "The keys to the cabinet are on the table. She picked them up and walked out of the room."


def test_a_link_with_factor_settings_reopens_the_same_view():
    app = page("pages/3_Neuron_factors.py")
    app.query_params.update({"text": TEXT, "new": "0", "factors_method": "pca", "factors_n": "4"})
    run(app)
    assert app.selectbox(key="factors_method").value == "pca"
    assert app.number_input(key="factors_n").value == 4
    assert "PCA of" in " ".join(caption.value for caption in app.caption)


def test_page_shows_one_sparkline_per_factor_and_switches_method(lm):
    app = page("pages/3_Neuron_factors.py")
    app.query_params["text"] = TEXT
    app.query_params["new"] = "0"
    run(app)
    assert app.title[0].value == "Neuron factors"
    n_tokens = len(ec.capture(lm, TEXT).tokens)
    captions = " ".join(caption.value for caption in app.caption)
    assert "clipped to 0" in captions
    assert f"over {n_tokens - 1} tokens" in captions  # the first token (attention sink) is left out by default
    assert len(app.radio(key="factors_pick").options) == 10

    app.number_input(key="factors_n").set_value(4)
    app.slider(key="factors_layers").set_value((2, 3))
    app.selectbox(key="factors_negatives").set_value("split")
    run(app)
    assert "NMF of 6144 neurons of block 2 FFN, block 3 FFN" in " ".join(caption.value for caption in app.caption)
    app.selectbox(key="factors_method").set_value("pca")
    run(app)
    assert not app.error
    assert "PCA of 3072 neurons of block 2 FFN, block 3 FFN" in " ".join(caption.value for caption in app.caption)
    app.radio(key="factors_pick").set_value(3)
    run(app)
    assert app.radio(key="factors_pick").value == 3
    cap = ec.capture(lm, TEXT)
    top = ec.factors(cap, "pca", n_components=4, layers=range(2, 4), positions=range(1, n_tokens)).top_neurons(10)
    shown = app.dataframe[0].value
    assert shown["neuron"].tolist() == top[top["factor"] == 3]["neuron"].tolist()

    # How far to trust the factors (#30), beside the neurons: every method's FVU and seed stability, on demand.
    pca = ec.factors(cap, "pca", n_components=4, layers=range(2, 4), positions=range(1, n_tokens))
    assert f"FVU of this PCA: {1 - pca.explained_variance:.2f}" in " ".join(c.value for c in app.caption)
    app.toggle(key="factors_quality").set_value(True)
    run(app)
    quality = app.dataframe[1].value
    assert quality["method"].tolist() == ["NMF (non-negative)", "PCA", "ICA (FastICA)"]
    assert quality["fvu"][1] == pytest.approx(1 - pca.explained_variance)
    assert quality["stability"][1] == pytest.approx(1.0, abs=1e-4)  # an SVD: the seed changes nothing
    assert 0 < quality["stability"][2] <= 1
    assert any("Hungarian matching" in c.value for c in app.caption)
    assert app.query_params["factors_quality"] in ("true", ["true"])


@pytest.mark.parametrize(("model", "text", "new"), [(ec.DEFAULT_MODEL, "The keys to the cabinet", "1"),
                                                    (ec.DEFAULT_ENCODER, "The keys to the cabinet are on the table.", "0")])
def test_home_examples_get_as_many_factors_as_their_text_allows(model, text, new):
    # Home's short examples gave "n_components must be a whole number from 1 to 5; got 10" and no view.
    app = page("pages/3_Neuron_factors.py")
    app.query_params.update({"model": model, "text": text, "new": new})
    run(app)
    assert not app.error, [error.value for error in app.error]
    analysed = int(re.search(r"over (\d+) tokens", " ".join(caption.value for caption in app.caption)).group(1))
    usual = ec.factors.default_components(analysed)
    assert app.number_input(key="factors_n").value == usual < 10
    assert app.number_input(key="factors_n").proto.max == analysed  # the box offers what the text allows
    assert len(app.radio(key="factors_pick").options) == usual
    assert any(f"{usual} factors by default on this short text" in caption.value for caption in app.caption)
    assert "factors_n" not in app.query_params


def test_a_value_left_at_its_default_follows_a_longer_text():
    app = page("pages/3_Neuron_factors.py")
    app.query_params.update({"text": "The keys to the cabinet", "new": "1"})
    run(app)
    assert app.number_input(key="factors_n").value == 2
    app.sidebar.text_area[0].set_value(TEXT)
    app.sidebar.button[0].click()
    run(app)
    assert app.number_input(key="factors_n").value == 10 and "factors_n" not in app.query_params


def test_too_few_tokens_are_reported_in_the_words_of_the_checkboxes():
    app = page("pages/3_Neuron_factors.py")
    app.query_params.update({"model": ec.DEFAULT_ENCODER, "text": "Hi"})  # [CLS] hi [SEP]
    run(app)
    errors = " ".join(error.value for error in app.error)
    assert "**Skip special tokens**" in errors and "positions must" not in errors


def test_a_copied_link_reopens_blocks_checkboxes_factor_and_neuron():
    app = page("pages/3_Neuron_factors.py")
    app.query_params.update({"text": TEXT, "new": "0"})
    run(app)
    assert next(box for box in app.selectbox if box.label == "Rank the FFN's neurons on").value == -1  # not a placeholder
    app.slider(key="factors_layers").set_value((2, 4))
    app.checkbox(key="factors_skip_first").uncheck()
    app.number_input(key="factors_n").set_value(4)
    run(app)
    app.radio(key="factors_pick").set_value(2)
    run(app)
    app.number_input(key="neuron_index").set_value(7)
    app.selectbox(key="neuron_rank_on").set_value(3)
    run(app)
    assert not app.error
    link = dict(app.query_params)
    assert {"factors_layers", "factors_skip_first", "factors_n", "factors_pick", "neuron_index",
            "neuron_rank_on"} <= set(link)

    reopened = page("pages/3_Neuron_factors.py")
    reopened.query_params.update(link)
    run(reopened)
    assert reopened.slider(key="factors_layers").value == (2, 4)
    assert reopened.checkbox(key="factors_skip_first").value is False
    assert reopened.number_input(key="factors_n").value == 4
    assert reopened.radio(key="factors_pick").value == 2
    assert reopened.number_input(key="neuron_layer").value == app.number_input(key="neuron_layer").value
    assert reopened.number_input(key="neuron_index").value == 7
    assert reopened.selectbox(key="neuron_rank_on").value == 3
    for shown, again in zip(app.dataframe, reopened.dataframe):
        assert shown.value.equals(again.value)


def test_page_on_the_encoder_leaves_out_cls_and_sep(encoder):
    app = page("pages/3_Neuron_factors.py")
    app.query_params["model"] = ec.DEFAULT_ENCODER
    app.query_params["text"] = TEXT
    run(app)
    cap = ec.capture(encoder, TEXT)
    assert cap.special[0] and cap.special[-1]
    captions = " ".join(caption.value for caption in app.caption)
    assert f"NMF of {6 * encoder.d_ff} neurons of block 0 FFN to block 5 FFN over {cap.n_tokens - 2} tokens" in captions


def test_one_neuron_follows_a_new_layer_range():
    app = page("pages/3_Neuron_factors.py")
    app.query_params.update({"text": TEXT, "new": "0", "factors_n": "3"})
    run(app)
    shown = app.number_input[1].value  # the One neuron section's layer
    app.slider(key="factors_layers").set_value((20, 22) if shown < 20 else (2, 4))
    run(app)
    first, last = app.slider(key="factors_layers").value
    assert first <= app.number_input[1].value <= last
