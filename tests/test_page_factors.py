"""The Neuron factors page, through Streamlit's AppTest (the library is tested in test_factors.py)."""

import re

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


def test_page_reports_too_many_factors_as_an_error():
    app = page("pages/3_Neuron_factors.py")
    app.query_params["text"] = "Hello there, friend"
    app.query_params["new"] = "0"
    run(app)
    assert any(re.search(r"n_components must be a whole number from 1 to \d; got 10", error.value) for error in app.error)


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
