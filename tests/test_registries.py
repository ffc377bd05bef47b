"""Method registries: a method is one function and one entry, and the analysis dispatches through the entry."""

import numpy as np
import pytest

import ecco_core as ec
from ecco_core import attention, factors, saliency
from ecco_core import similarity as sim
from ecco_core._registry import Method


@pytest.mark.parametrize("registry", [saliency.METHODS, factors.METHODS, sim.METHODS, attention.METHODS])
def test_every_entry_is_a_function_and_a_description(registry):
    for name, entry in registry.items():
        assert callable(entry.function) and entry.description.strip(), name


def test_a_saliency_method_added_as_one_entry_is_used(lm, monkeypatch):
    cap = ec.capture(lm, "The capital of France is", max_new_tokens=2)
    calls = []

    def doubled_gradient(lm, token_ids, read_positions, target_of, *, steps, max_chunk_bytes, progress):
        calls.append(steps)
        raw, signed, values = saliency.METHODS["gradient"].function(
            lm, token_ids, read_positions, target_of, steps=steps, max_chunk_bytes=max_chunk_bytes
        )
        return 2 * raw, signed, values

    entry = saliency.SaliencyMethod(doubled_gradient, "twice the gradient's norm", signed=False)
    monkeypatch.setitem(saliency.METHODS, "doubled_gradient", entry)
    trial = ec.saliency(lm, cap, method="doubled_gradient", steps=3)
    plain = ec.saliency(lm, cap, method="gradient")
    assert calls == [3] and trial.method == "doubled_gradient"
    np.testing.assert_allclose(trial.raw, 2 * plain.raw, rtol=1e-6)
    np.testing.assert_allclose(trial.scores, plain.scores, rtol=1e-6)
    with pytest.raises(ValueError, match=r"method must be a method with a direction \(a norm has none\), one of "
                       r"'grad_x_input', 'integrated_gradients', 'erasure'; got 'doubled_gradient'"):
        trial.signed_shares()  # the signed methods are named from the entries, the trial one among the unsigned


def test_a_similarity_method_added_as_one_entry_is_used(monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 4))

    def mean_abs_correlation(a, b):  # a, b: centred (n_samples, d) matrices (the default preparation)
        a, b = a / np.linalg.norm(a, axis=0), b / np.linalg.norm(b, axis=0)
        return float(np.abs(a.T @ b).mean())

    monkeypatch.setitem(sim.METHODS, "mac", sim.SimilarityMethod(mean_abs_correlation, "mean |correlation|"))
    result = sim.similarity_matrix([X, -X], [X], "mac")
    expected = mean_abs_correlation(X - X.mean(0), X - X.mean(0))
    np.testing.assert_allclose(result.values[:, 0], expected, rtol=1e-12)
    assert result.warning is None and result.max_dimensions == 4


def test_a_factor_method_added_as_one_entry_is_used(lm, monkeypatch):
    cap = ec.capture(lm, "The keys to the cabinet are on the table.")
    monkeypatch.setitem(factors.METHODS, "pca again", Method(factors.METHODS["pca"].function, "PCA, a second entry"))
    trial = ec.factors(cap, n_components=3, method="pca again", layers=0)
    plain = ec.factors(cap, n_components=3, method="pca", layers=0)
    assert trial.method == "pca again"
    np.testing.assert_allclose(trial.token_activations, plain.token_activations, rtol=1e-5, atol=1e-6)


def test_a_non_negative_factor_method_added_as_one_entry_gets_its_negatives_clipped(lm, monkeypatch):
    """#27 §2: factors clipped (or split) negative activations, and kept the factors' signs, for the name "nmf"
    alone; a second non-negative method was handed the signed values. The entry's non_negative says it."""
    cap = ec.capture(lm, "The keys to the cabinet are on the table.")
    monkeypatch.setitem(factors.METHODS, "nmf again", factors.METHODS["nmf"]._replace(description="NMF, again"))
    trial = ec.factors(cap, n_components=3, method="nmf again", layers=0)
    plain = ec.factors(cap, n_components=3, method="nmf", layers=0)
    assert trial.negatives == "clip" and trial.clipped_fraction == plain.clipped_fraction > 0
    np.testing.assert_allclose(trial.token_activations, plain.token_activations, rtol=1e-5, atol=1e-6)


def test_an_attention_method_added_as_one_entry_is_used(lm, monkeypatch):
    cap = ec.capture(lm, "The keys to the cabinet are on the table.")
    seen = []

    def squared(weights, value_norms, previous):  # (n_heads, n_tokens, n_tokens) -> the same shape
        seen.append((value_norms is None, previous is None))
        return weights**2

    monkeypatch.setitem(attention.METHODS, "squared", attention.AttentionMethod(squared, "alpha_ij squared", "squared",
                                                                                "weight\u00b2", rows_sum_to_one=False))
    trial = ec.attention(lm, cap, "squared", layers=[1, 3])
    plain = ec.attention(lm, cap, "raw", layers=[1, 3])
    assert trial.method == "squared" and seen == [(True, True), (True, True)]  # kept blocks only, nothing chained
    np.testing.assert_allclose(trial.scores, plain.scores**2, rtol=1e-5, atol=1e-7)
    figure = ec.plots.attention_heatmap(trial, 3, 0)
    assert figure.layout.title.text == "block 3, head 0: squared"
