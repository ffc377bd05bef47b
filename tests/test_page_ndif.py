"""Run on: this machine / NDIF (#28), through AppTest, with no network.

NDIF is this machine standing in for it (``ECCO_NDIF=local``): every request is
serialised and deserialised as NDIF's server would (nnsight's ``remote="local"``)
and the pages' model is a copy on the meta device, as on NDIF, so a view that
would run the model here fails here too. An unreachable NDIF is a closed port.
"""

import json

import numpy as np

import ecco_core as ec
from ecco_core import backends
from apptest import assert_no_error, page, run

KEY = "ndif-page-key-7d1e"  # a made-up key: what must never show
SHORT = {"text": "The capital of France is", "new": "1"}
SERVED_HERE = "Computed on this machine standing in for NDIF (SmolLM2-135M-Instruct)."
#: Each page on NDIF: where its result says it was computed, or why it runs on this machine only.
PAGES = {
    "pages/1_Saliency.py": SERVED_HERE,
    "pages/2_Layer_predictions.py": SERVED_HERE,
    "pages/3_Neuron_factors.py": "Captured on this machine standing in for NDIF (SmolLM2-135M-Instruct); "
                                 "analysed on this machine.",
    "pages/4_Similarity.py": "Captured on this machine standing in for NDIF",
    "pages/5_Probing.py": SERVED_HERE,
    "pages/6_Causal_tracing.py": SERVED_HERE,
    "pages/7_Attention.py": "Attention (its weights need the model's eager attention): on this machine only",
    "pages/8_Circuits.py": SERVED_HERE,
}

#: A page's own settings for the walk, beyond the sidebar's: a run as small as the page allows, opened from a link.
LINKED = {
    "pages/5_Probing.py": {"probe_preset": "custom", "probe_tokens": "100", "probe_trials": "1", "probe_epochs": "1",
                           "probe_layers": ["embeddings", "0"], "probe_ran": "true"},
    "pages/8_Circuits.py": {"circuits_head": "23,3", "circuits_exact": "false", "circuits_ablation": "mean",
                            "circuits_verify": "true"},
}

#: What a page shows on NDIF as on this machine, beside its result: the views that run there too.
ALSO_SHOWN = {
    "pages/2_Layer_predictions.py": ("How far to trust each row (right of the heatmap): KL from the output's",),
    # Direct logit attribution runs there; what needs every head's attention weights says it runs here only.
    "pages/8_Circuits.py": ("The information-flow routes: on this machine only (it needs every head's attention "
                            "weights, which NDIF's fused attention does not give)",
                            "Its attention and what it reads from each token: on this machine only",
                            "Writes **+", "Ablated with its mean over the positions"),
}


def _shown(app) -> list[str]:
    """Every text the page shows (errors, notes, captions, Markdown) and its address."""
    texts = [element.value for kind in ("error", "warning", "info", "caption", "markdown", "success")
             for element in getattr(app, kind)]
    return texts + [json.dumps({key: app.query_params[key] for key in app.query_params})]


def _assert_key_hidden(app) -> None:
    assert not any(KEY in text for text in _shown(app))


def test_a_link_with_ndif_asks_for_the_key_then_every_page_runs_there(monkeypatch):
    monkeypatch.setenv("ECCO_NDIF", "local")
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    home = page("Home.py")
    home.query_params.update(run_on="ndif", **SHORT)
    run(home)
    field = home.sidebar.text_input(key="_ndif_key")
    assert field.proto.type == field.proto.PASSWORD and home.sidebar.radio(key="run_on").value == "ndif"
    assert any("Running on NDIF needs your NDIF API key: type it in the sidebar" in e.value for e in home.error)
    field.input(KEY)
    run(home)
    assert_no_error(home)
    assert SERVED_HERE in [caption.value for caption in home.caption]
    _assert_key_hidden(home)

    for name, said in PAGES.items():
        app = page(name)
        app.query_params.update(run_on="ndif", **SHORT, **{"trace_method": "approximate", "trace_compare": "false"},
                                **LINKED.get(name, {}))
        app.session_state["_ndif_key_kept"] = KEY  # typed on an earlier page of this session
        run(app)
        assert_no_error(app)
        assert any(text.startswith(said) for text in _shown(app)), (name, _shown(app))
        for shown in ALSO_SHOWN.get(name, ()):
            assert any(text.startswith(shown) for text in _shown(app)), (name, shown, _shown(app))
        if name == "pages/5_Probing.py":  # Table 1, its probes trained where the model runs, estimated as NDIF's
            assert list(app.dataframe[0].value.layer) == ["embeddings", "block 0", "block 0 FFN"]
            assert any(text.startswith("These settings: ") and text.endswith(
                "at this machine's pace (NDIF's queue not included); NDIF's wait shows while it runs.")
                for text in _shown(app)), _shown(app)
        if name == "pages/3_Neuron_factors.py":  # a token more (6 analysed): more than one fetch of every FFN, so
            # NMF is fitted where the model ran, the factors alone brought back, and the loadings' download says so
            app = page(name)
            app.query_params.update(run_on="ndif", **{**SHORT, "new": "2"})
            app.session_state["_ndif_key_kept"] = KEY
            run(app)
            assert_no_error(app)
            assert SERVED_HERE in _shown(app), _shown(app)
            helps = [button.proto.help for button in app.get("download_button")]
            assert any("sent back each factor's 100 strongest neurons only. This download asks it for every "
                       "loading: the same fit made again there, about 0.5 MB back." in help for help in helps), helps
        if name == "pages/2_Layer_predictions.py":  # the suggested candidates, read on NDIF
            assert len(app.pills(key="watch_pills").options) > 0
        _assert_key_hidden(app)
        if name == "pages/4_Similarity.py":  # over texts: the matrix and the median cell's chance computed on NDIF
            app.session_state["similarity_n_sentences"] = 2
            app.radio(key="similarity_source").set_value("ud")
            run(app)
            assert_no_error(app)
            assert any(text.startswith(SERVED_HERE) for text in _shown(app)), _shown(app)
            assert any(text.startswith("The median cell, ") for text in _shown(app)), _shown(app)
            app.selectbox(key="similarity_method").set_value("pwcca")  # saturated on 2 sentences: a setting proposed,
            run(app)  # its cost said as NDIF's
            assert any("UD sentences (" in w.value and "at this machine's pace (NDIF's queue not included))" in w.value
                       for w in app.warning), [w.value for w in app.warning]
        if name == "pages/1_Saliency.py":  # every method, and the faithfulness check of all four, on NDIF too
            app.selectbox(key="saliency_method").set_value("erasure")
            app.checkbox(key="saliency_faithfulness").check()
            run(app)
            assert_no_error(app)
            assert any(text.startswith(SERVED_HERE) for text in _shown(app))
            assert "**Agreement between the methods** (Kendall's tau of their scores)" in _shown(app)

    home.sidebar.radio(key="run_on").set_value("here")
    run(home)
    assert_no_error(home)
    assert "Computed on this machine." in [caption.value for caption in home.caption]
    assert "run_on" not in home.query_params


def test_an_unreachable_ndif_is_said_and_nothing_the_user_had_is_lost(monkeypatch):
    monkeypatch.delenv("ECCO_NDIF", raising=False)
    monkeypatch.setenv("NDIF_HOST", "http://127.0.0.1:9")  # nothing listens on port 9
    app = page("Home.py")
    app.query_params.update(**SHORT)
    run(app)
    assert_no_error(app)
    assert "Computed on this machine." in [caption.value for caption in app.caption]
    app.sidebar.radio(key="run_on").set_value("ndif")
    run(app)
    app.sidebar.text_input(key="_ndif_key").input(KEY)
    run(app)
    assert not app.exception
    said = [error.value for error in app.sidebar.error]
    assert len(said) == 1 and "127.0.0.1" in said[0] and "is unreachable" in said[0], said
    assert said[0].endswith("Your settings and key are kept: choose Run on: this machine meanwhile")
    assert app.query_params["run_on"] in ("ndif", ["ndif"]) and app.sidebar.text_area(key="_text").value == SHORT["text"]
    _assert_key_hidden(app)
    app.sidebar.radio(key="run_on").set_value("here")
    run(app)
    assert_no_error(app)  # this machine's results come back at once, the key kept for a later try
    assert "Computed on this machine." in [caption.value for caption in app.caption]
    app.sidebar.radio(key="run_on").set_value("ndif")
    run(app)
    assert app.sidebar.text_input(key="_ndif_key").value == KEY


def test_ndifs_served_models_are_offered_and_a_queue_timeout_is_said_with_what_to_do(monkeypatch, queueing_ndif):
    monkeypatch.delenv("ECCO_NDIF", raising=False)
    monkeypatch.setenv("NDIF_HOST", queueing_ndif)
    monkeypatch.setenv("NDIF_QUEUE_TIMEOUT", "0.5")
    app = page("pages/2_Layer_predictions.py")
    app.query_params.update(run_on="ndif", **SHORT)
    app.session_state["_ndif_key_kept"] = KEY
    run(app)
    assert app.sidebar.selectbox(key="_model_choice").options[0] == ec.DEFAULT_MODEL  # NDIF's list, read from it
    said = [error.value for error in app.error]
    assert said and all("kept the request waiting (QUEUED) for more than 0.5 s, so it was given up" in error
                        and "try again in a few minutes" in error for error in said), said
    _assert_key_hidden(app)


def _strings_held(root) -> set:
    """Every str reachable from ``root`` through objects' own references (not through classes, modules, functions,
    or the weights every session shares)."""
    import gc
    import types

    import torch

    skipped = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, torch.nn.Module, torch.Tensor)
    seen, stack, found = set(), [root], set()
    while stack:
        held = stack.pop()
        if id(held) in seen or isinstance(held, skipped):
            continue
        seen.add(id(held))
        if isinstance(held, str):
            found.add(held)
        else:
            stack.extend(gc.get_referents(held))
    return found


def test_a_capture_cached_for_all_sessions_is_fetched_under_the_readers_key_and_holds_none(lm, monkeypatch):
    import dashboard

    served = backends.simulated(lm)
    key_a, key_b = "ndif-key-of-session-A-3e1f", "ndif-key-of-session-B-9c07"
    session_a, session_b = backends.with_key(served, key_a), backends.with_key(served, key_b)
    sent_under = []  # the key each request is made with (what a request to NDIF carries)
    request = backends.Traced.request
    monkeypatch.setattr(backends.Traced, "request", lambda self: sent_under.append(self._api_key) or request(self))
    text = "Each session brings its own key"
    read_by_a = dashboard.cached_capture(lm.name, text, 0, "", session_a)
    read_by_b = dashboard.cached_capture(lm.name, text, 0, "", session_b)  # A's capture, from the cache
    assert sent_under == [key_a] and read_by_b.pending == ("hidden_states", "ffn")
    hooked = ec.capture(lm, text, max_new_tokens=0)
    np.testing.assert_allclose(read_by_b.rows("hidden_states", [1]), hooked.hidden_states[1:2], rtol=0, atol=1e-5)
    assert sent_under == [key_a, key_b]  # B's read went under B's key
    np.testing.assert_array_equal(read_by_a.rows("hidden_states", [1]), read_by_b.rows("hidden_states", [1]))
    assert sent_under == [key_a, key_b]  # fetched once for both
    cached = dashboard.cached_capture.cache.peek((lm.name, text, 0, "", served.backend.where))
    assert cached is not None and not {key_a, key_b} & _strings_held(cached)
    assert key_a in _strings_held(read_by_a)  # the walk finds a key where one is held
