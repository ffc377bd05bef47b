"""Neuron factors (NMF, PCA, ICA) and per-neuron activations: recovery, invariants, shapes, messages, page."""

import re

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import ecco_core as ec
from ecco_core import plots
from ecco_core.factors import activation_matrix

TEXT = "The keys to the cabinet are on the table. She picked them up and walked out of the room."


def capture_of(ffn: np.ndarray) -> ec.Capture:
    """A Capture around given FFN activations of shape (n_layers, n_tokens, d_ff), for known-answer checks."""
    n_layers, n_tokens, _ = ffn.shape
    return ec.Capture(
        tokens=tuple(f" t{i}" for i in range(n_tokens)), token_ids=np.arange(n_tokens), n_input=n_tokens,
        hidden_states=np.zeros((n_layers + 1, n_tokens, 1), np.float32), ffn=ffn.astype(np.float32),
        top_ids=np.zeros((n_tokens, 0), np.int64), top_probs=np.zeros((n_tokens, 0), np.float32),
        top_tokens=((),) * n_tokens, model_name="known product", causal=True,
        special=np.zeros(n_tokens, bool),
    )


def matched_correlations(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Correlation of each true row with the found row matched to it (Hungarian matching)."""
    k = len(truth)
    correlation = np.corrcoef(truth, found)[:k, k:]
    rows, columns = linear_sum_assignment(-correlation)
    return correlation[rows, columns]


@pytest.fixture(scope="module")
def cap(lm):
    return ec.capture(lm, TEXT)


# ------------------------------------------------------------------ meaning
def test_nmf_recovers_the_token_factors_of_a_known_non_negative_product():
    rng = np.random.default_rng(0)
    n_tokens, n_neurons, k = 80, 2 * 120, 4
    token_factors = rng.exponential(1.0, (k, n_tokens)) * (rng.random((k, n_tokens)) < 0.4)
    loadings = rng.exponential(1.0, (k, n_neurons)) * (rng.random((k, n_neurons)) < 0.3)
    product = token_factors.T @ loadings
    activations = product + rng.normal(0, 0.01 * product.std(), product.shape)
    cap = capture_of(activations.reshape(n_tokens, 2, 120).transpose(1, 0, 2))

    result = ec.factors(cap, n_components=k, method="nmf")

    assert matched_correlations(result.token_activations, token_factors).min() > 0.95
    assert result.clipped_fraction == pytest.approx(float((activations < 0).mean()))
    assert result.reconstruction_error < 0.05


def test_pca_components_are_orthonormal_and_the_full_rank_explains_everything(cap):
    result = ec.factors(cap, n_components=6, method="pca", layers=range(4, 8))
    np.testing.assert_allclose(result.components @ result.components.T, np.eye(6), atol=1e-5)
    centred_rank = cap.n_tokens - 1  # centring removes one dimension
    full = ec.factors(cap, n_components=centred_rank, method="pca", layers=range(4, 8))
    assert full.explained_variance == pytest.approx(1.0, abs=1e-4)
    assert result.explained_variance < full.explained_variance


@pytest.mark.parametrize("method", ["nmf", "pca", "ica"])
def test_factors_reconstruct_the_activations_they_report(cap, method):
    result = ec.factors(cap, n_components=5, method=method, layers=[2, 9])
    matrix = activation_matrix(cap, [2, 9])
    if method == "nmf":
        matrix = np.maximum(matrix, 0)
        assert result.clipped_fraction == pytest.approx(float((activation_matrix(cap, [2, 9]) < 0).mean()))
        assert "clipped to 0" in result.note and f"{result.clipped_fraction:.1%}" in result.note
    else:
        assert result.clipped_fraction == 0.0
        strongest = np.abs(result.token_activations).argmax(axis=1)
        assert (result.token_activations[np.arange(5), strongest] > 0).all()
    reconstruction = result.token_activations.T @ result.components + result.mean
    error = np.linalg.norm(matrix - reconstruction) / np.linalg.norm(matrix)
    assert result.reconstruction_error == pytest.approx(error, rel=1e-4)
    assert 0 < result.explained_variance <= 1


def test_split_negatives_keep_both_sides_of_signed_neurons(cap):
    signed = activation_matrix(cap, [2, 9])
    result = ec.factors(cap, n_components=5, method="nmf", layers=[2, 9], negatives="split")
    n_neurons = signed.shape[1]
    assert result.components.shape == (5, 2 * n_neurons) and (result.components >= 0).all()
    assert result.clipped_fraction == 0.0 and "nothing was clipped" in result.note
    assert list(result.neuron_signs[[0, n_neurons - 1, n_neurons, -1]]) == [1, 1, -1, -1]
    assert (result.neuron_indices[:n_neurons] == result.neuron_indices[n_neurons:]).all()
    split = np.concatenate([np.maximum(signed, 0), np.maximum(-signed, 0)], axis=1)
    reconstruction = result.token_activations.T @ result.components
    assert result.reconstruction_error == pytest.approx(
        np.linalg.norm(split - reconstruction) / np.linalg.norm(split), rel=1e-4)
    # Positive part minus negative part gives back a signed estimate of every neuron.
    signed_estimate = reconstruction[:, :n_neurons] - reconstruction[:, n_neurons:]
    clipped = ec.factors(cap, n_components=5, method="nmf", layers=[2, 9])
    clipped_estimate = clipped.token_activations.T @ clipped.components
    assert np.linalg.norm(signed - signed_estimate) < np.linalg.norm(signed - clipped_estimate)
    assert set(result.top_neurons(3)["sign"]) <= {1, -1}


@pytest.mark.parametrize("method", ["nmf", "ica"])
def test_the_same_seed_gives_the_same_factors(cap, method):
    first = ec.factors(cap, method, n_components=4, layers=3, seed=7)
    second = ec.factors(cap, method, n_components=4, layers=3, seed=7)
    np.testing.assert_array_equal(first.token_activations, second.token_activations)
    np.testing.assert_array_equal(first.components, second.components)


# ------------------------------------------------------------------- shapes
def test_factors_of_the_whole_network_and_of_one_layer_have_the_promised_shapes(lm, cap):
    whole = ec.factors(cap)
    assert whole.token_activations.shape == (10, cap.n_tokens)
    assert whole.components.shape == (10, lm.n_layers * lm.d_ff)
    assert whole.layers == tuple(range(lm.n_layers))
    assert (whole.neuron_layers[:: lm.d_ff] == np.arange(lm.n_layers)).all()
    assert whole.converged

    one = ec.factors(cap, n_components=3, method="ica", layers=0)
    assert one.token_activations.shape == (3, cap.n_tokens)
    assert one.components.shape == (3, lm.d_ff)
    assert one.layers == (0,) and (one.neuron_layers == 0).all()
    assert (one.neuron_indices == np.arange(lm.d_ff)).all()


def test_tables_label_every_factor_token_and_neuron(cap):
    result = ec.factors(cap, n_components=4, method="nmf", layers=slice(10, 12), positions=range(1, cap.n_tokens))
    tokens = result.to_frame()
    assert list(tokens.columns) == ["position", "token", "factor_0", "factor_1", "factor_2", "factor_3"]
    assert list(tokens["token"]) == list(cap.tokens[1:])
    np.testing.assert_array_equal(tokens["factor_2"], result.token_activations[2])

    loadings = result.loadings_frame()
    assert list(loadings.columns[:4]) == ["layer", "block", "neuron", "sign"] and (loadings["sign"] == 1).all()
    assert len(loadings) == result.n_neurons == 2 * cap.ffn.shape[2]
    assert set(loadings["layer"]) == {"block 10 FFN", "block 11 FFN"} and set(loadings["block"]) == {10, 11}

    top = result.top_neurons(5)
    assert len(top) == 4 * 5 and list(top["rank"][:5]) == [1, 2, 3, 4, 5]
    column = (top["block"] - 10) * cap.ffn.shape[2] + top["neuron"]
    assert (top["layer"] == [f"block {block} FFN" for block in top["block"]]).all()
    np.testing.assert_array_equal(top["loading"], result.components[top["factor"], column])
    for _, group in top.groupby("factor"):
        magnitudes = group["loading"].abs().to_numpy()
        assert (np.diff(magnitudes) <= 0).all()
        assert magnitudes[0] == np.abs(result.components[group["factor"].iloc[0]]).max()


def test_factors_work_on_every_family(tiny):
    cap = ec.capture(tiny, "The keys to the cabinet")
    result = ec.factors(cap, n_components=3, method="pca")
    assert result.token_activations.shape == (3, cap.n_tokens)
    assert result.components.shape == (3, tiny.n_layers * tiny.d_ff)


def test_the_default_number_of_factors_fits_a_short_text(lm):
    short = ec.capture(lm, "The keys to the cabinet")  # 5 tokens, 4 without the attention sink
    result = ec.factors(short, positions=range(1, short.n_tokens))
    assert result.n_components == ec.factors.default_components(short.n_tokens - 1) == 2
    assert [ec.factors.default_components(n) for n in (0, 1, 2, 3, 19, 20, 500)] == [1, 1, 1, 1, 9, 10, 10]
    assert ec.factors.max_components(4, 46_080) == 4 and ec.factors.max_components(50, 30) == 30


# --------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"n_components": 0}, ValueError, r"n_components must be a whole number from 1 to \d+; got 0"),
        ({"n_components": 10_000}, ValueError, r"n_components must be a whole number from 1 to \d+; got 10000"),
        ({"n_components": 2.5}, TypeError, r"n_components must be a whole number from 1 to \d+; got 2.5"),
        ({"method": "svd"}, ValueError, "method must be one of 'nmf', 'pca', 'ica'; got 'svd'"),
        ({"layers": range(3, 3)}, ValueError, r"layers must be .* block indices from 0 to 29, .*; got range\(3, 3\)"),
        ({"layers": 30}, ValueError, "layers must be .* block indices from 0 to 29, at least one; got 30"),
        ({"layers": [1, -1]}, ValueError, r"layers must be .*; got \[1, -1\]"),
        ({"layers": [2, 2]}, ValueError, r"layers must be .*distinct.*; got \[2, 2\]"),
        ({"layers": True}, TypeError, "layers must be an int, a range, a slice or a sequence .*; got True"),
        ({"layers": "0-3"}, TypeError, "layers must be an int.*; got '0-3'"),
        ({"positions": [0]}, ValueError, r"positions must be at least 2 token positions .*; got \[0\]"),
        ({"negatives": "abs"}, ValueError, "negatives must be one of 'clip', 'split'; got 'abs'"),
        ({"method": "pca", "negatives": "split"}, ValueError, "negatives must be 'clip' for PCA.*; got 'split'"),
        ({"positions": [0, 500]}, ValueError, r"positions must be .* position indices from 0 to \d+, .*; got \[0, 500\]"),
    ],
)
def test_bad_arguments_name_themselves(cap, arguments, error, message):
    with pytest.raises(error, match=message):
        ec.factors(cap, **arguments)


def test_activations_with_nothing_to_factor_are_refused():
    with pytest.raises(ValueError, match="all activations of block 0 FFN, block 1 FFN are <= 0.*try negatives='split', method='pca'"):
        ec.factors(capture_of(-np.ones((2, 6, 8))), n_components=2, method="nmf")
    with pytest.raises(ValueError, match="do not vary over these tokens, so PCA has nothing to factor"):
        ec.factors(capture_of(np.ones((2, 6, 8))), n_components=2, method="pca")
    with pytest.raises(ValueError, match="all activations of block 0 FFN are <= 0"):
        ec.factors(capture_of(np.zeros((1, 6, 8))), n_components=2, method="nmf", layers=0)
    with pytest.raises(ValueError, match="all activations of block 0 FFN are 0 on these tokens"):
        ec.factors(capture_of(np.zeros((1, 6, 8))), n_components=2, method="nmf", negatives="split")


# ------------------------------------------------------------------ neurons
def test_neurons_rank_by_magnitude_and_report_every_token(cap):
    layer_activations = cap.ffn[5]
    overall = ec.neurons(cap, 5, top_k=8)
    assert overall.activations.shape == (8, cap.n_tokens)
    peak = np.abs(layer_activations).max(axis=0)
    np.testing.assert_array_equal(overall.neurons, np.argsort(-peak, kind="stable")[:8])
    np.testing.assert_array_equal(overall.activations, layer_activations[:, overall.neurons].T)

    on_token = ec.neurons(cap, 5, top_k=3, position=4)
    assert on_token.scores[0] == np.abs(layer_activations[4]).max()
    assert (np.diff(on_token.scores) <= 0).all()

    picked = ec.neurons(cap, 5, ids=[7, 3])
    np.testing.assert_array_equal(picked.activations, layer_activations[:, [7, 3]].T)
    frame = picked.to_frame()
    assert len(frame) == 2 * cap.n_tokens and list(frame["token"][: cap.n_tokens]) == list(cap.tokens)
    assert set(frame["layer"]) == {"block 5 FFN"} and set(frame["block"]) == {5}


def test_neurons_bad_arguments(cap):
    with pytest.raises(ValueError, match="layer must be a whole number from 0 to 29; got 30"):
        ec.neurons(cap, 30)
    with pytest.raises(ValueError, match=r"top_k must be a whole number from 1 to 1536; got 0"):
        ec.neurons(cap, 0, top_k=0)
    with pytest.raises(ValueError, match="position must be a whole number from 0 to \\d+; got 99"):
        ec.neurons(cap, 0, position=99)
    with pytest.raises(ValueError, match=r"ids must be .* neuron indices from 0 to 1535, at least one; got \[1536\]"):
        ec.neurons(cap, 0, ids=[1536])
    with pytest.raises(TypeError, match="layer must be a whole number from 0 to 29; got '3'"):
        ec.neurons(cap, "3")


# -------------------------------------------------------------------- plots
def test_sparklines_carry_the_factor_and_escape_tokens():
    values = np.abs(np.random.default_rng(1).normal(size=(3, 4)))
    figure = plots.factor_sparklines(values, ["<b>", " a", "&", "\n"], selected=1)
    assert len(figure.data) == 3
    assert [int(trace.customdata[0][0]) for trace in figure.data] == [0, 1, 2]
    assert figure.data[0].text[0] == "0: &lt;b&gt;" and figure.data[0].text[2] == "2: &amp;"
    assert figure.data[1].line.color != figure.data[0].line.color
    shifted = plots.factor_sparklines(values, ["a", "b", "c", "d"], positions=[1, 2, 4, 5])
    assert list(shifted.data[2].x) == [1, 2, 4, 5] and list(shifted.data[2].customdata[3]) == [2, 5]
    with pytest.raises(ValueError, match="tokens must be 4 entries, one per column of token_activations; got 2 entries"):
        plots.factor_sparklines(values, ["a", "b"])


def test_token_bars_colour_by_sign():
    figure = plots.token_bars([0.5, -0.25], ["a", "<i>"])
    assert list(figure.data[0].marker.color) == ["#2962ff", "#e53935"]
    assert figure.data[0].hovertext[1] == "&lt;i&gt;"


# ------------------------------------------------------- the factor view (Figure 9)
def test_factor_view_colours_each_token_by_its_strongest_factor_and_escapes_tokens():
    activations = np.array([[4.0, 0.0, 1.0], [0.0, 2.0, 2.0]])
    levels, dominant = plots.factor_levels(activations)
    np.testing.assert_allclose(levels, [[1.0, 0.0, 0.25], [0.0, 1.0, 1.0]])
    assert dominant.tolist() == [0, 1, 1]
    html = plots.factor_view_html(activations, ["<b>", " x", "\n"], text_tokens=["BOS", "<b>", " x", "\n"],
                                  positions=[1, 2, 3])
    assert "&lt;b&gt;" in html and "\u21b5" in html and "left out of the analysis" in html
    assert "http" not in html  # nothing is fetched: the script is inline
    with pytest.raises(ValueError, match=r"positions must be token positions in 0 \.\. 3 \(the text's\); got \[1, 2, 4\]"):
        plots.factor_view_html(activations, ["a", "b", "c"], text_tokens=["a", "b", "c", "d"], positions=[1, 2, 4])


def test_factors_render_in_a_notebook_and_hovering_a_sparkline_isolates_its_factor(cap, browser):
    """Figure 9 in Chromium: tokens coloured by their strongest factor; hovering F1 shows F1 alone."""
    result = ec.factors(cap, n_components=4, method="nmf", layers=range(0, 6), positions=range(1, cap.n_tokens))
    assert result._repr_html_().startswith('<div id="ecco-factors-')
    levels, dominant = plots.factor_levels(result.token_activations)
    tab = browser.new_page()
    try:
        tab.set_content(f"<html><body>{result.to_html(cap.tokens, cap.n_input)}</body></html>")
        backgrounds = "() => [...document.querySelectorAll('.ecco-token[data-column]')]" \
                      ".map(span => getComputedStyle(span).backgroundColor)"

        def parsed(colours):  # "rgb(r, g, b)" or "rgba(r, g, b, a)" -> (r, g, b, a)
            values = [[float(v) for v in re.findall(r"[\d.]+", colour)] for colour in colours]
            return np.array([v if len(v) == 4 else v + [1.0] for v in values])

        def expected(factors):
            rgb = [[int(plots.FACTOR_COLORS[f][i:i + 2], 16) for i in (1, 3, 5)] for f in factors]
            alpha = [levels[f, column] for column, f in enumerate(factors)]
            return np.column_stack([rgb, alpha])

        before = tab.evaluate(backgrounds)
        np.testing.assert_allclose(parsed(before), expected(dominant), atol=0.01)
        assert len(set(dominant.tolist())) > 1  # several factors' colours on the text
        tab.locator(".ecco-spark").nth(1).hover(position={"x": 10, "y": 10})
        isolated = tab.evaluate(backgrounds)
        np.testing.assert_allclose(parsed(isolated), expected([1] * len(result.tokens)), atol=0.01)
        labels = tab.evaluate("() => [...document.querySelectorAll('.ecco-axis-label')].map(l => l.textContent)")
        assert labels[:3] == [token.strip() for token in result.tokens[:3]]  # the x axis names the tokens
        tab.mouse.move(1, 1000)
        np.testing.assert_allclose(parsed(tab.evaluate(backgrounds)), expected(dominant), atol=0.01)
    finally:
        tab.close()


def test_factors_run_on_one_blas_thread():
    """#31 item 6: scikit-learn's NMF, PCA and ICA on a thread per core waited on each other's BLAS calls under
    load (NMF of 30 blocks x 55 tokens: 140 s at load 29, 32 s on one thread at load 11). A method registered for
    the test reads the BLAS pools' threads while it fits, in a thread of its own as the app's sessions run it."""
    import threading

    from ecco_core._registry import Method
    from ecco_core.factors import METHODS
    from threadpoolctl import threadpool_info

    seen = []

    def record(matrix, n_components, seed):
        seen.append([pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"])
        return METHODS["pca"].function(matrix, n_components, seed)

    METHODS["trial"] = Method(record, "PCA, recording the BLAS threads")
    try:
        ffn = np.random.default_rng(0).random((2, 6, 8))
        session = threading.Thread(target=ec.factors, args=(capture_of(ffn), "trial"), kwargs={"n_components": 2})
        session.start()
        session.join()
        assert seen and seen[0] and set(seen[0]) == {1}
    finally:
        del METHODS["trial"]


def test_the_note_names_a_registered_method_by_its_label_and_claims_centring_only_for_centred_fits():
    """#27 §2: a factor method added as one entry (a truncated SVD, which does not centre) was described as
    "TRUNCATED_SVD of ...; each neuron's mean was removed": its key upper-cased, and a centring it never did."""
    from ecco_core.factors import METHODS, FactorMethod, _Fit

    def uncentred_svd(matrix, n_components, seed):
        left, values, right = np.linalg.svd(matrix, full_matrices=False)
        weights = left[:, :n_components] * values[:n_components]
        return _Fit(weights, right[:n_components], np.zeros(matrix.shape[1], matrix.dtype), True)

    METHODS["trial"] = FactorMethod(uncentred_svd, "truncated SVD of the uncentred activations", label="Truncated SVD")
    try:
        cap = capture_of(np.random.default_rng(0).random((2, 6, 8)))
        trial, pca = (ec.factors(cap, method, n_components=2) for method in ("trial", "pca"))
        assert trial.note.startswith("Truncated SVD of 16 neurons") and "mean was removed" not in trial.note
        assert pca.note.startswith("PCA of 16 neurons") and "each neuron's mean was removed" in pca.note
    finally:
        del METHODS["trial"]


def test_a_fit_that_reports_no_progress_still_reports_while_it_runs_and_stops_when_asked():
    """#31 item 6: scikit-learn's NMF takes no callback, so the page's box sat on "Starting…" for a 30-block fit
    (32-45 s). The fit now reports every second with the fraction it had and a message saying the time left is the
    estimate's (ecco_core._heartbeat), and an exception from progress (the page's Stop) stops the fit there."""
    import time

    from ecco_core._heartbeat import heartbeat

    def step():
        time.sleep(0.001)

    def work(seconds):  # a loop of Python calls, as scikit-learn's solvers make
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            step()

    reports = []
    with heartbeat(lambda fraction, message: reports.append((fraction, message)), 0.25, "fitting", every_s=0.05):
        work(0.4)
    assert len(reports) >= 4 and set(reports) == {(0.25, "fitting")}

    class Stopped(Exception):
        pass

    def stop(fraction, message):
        raise Stopped

    started = time.perf_counter()
    with pytest.raises(Stopped):
        with heartbeat(stop, 0.0, "fitting", every_s=0.05):
            work(10.0)
    assert time.perf_counter() - started < 1.0
