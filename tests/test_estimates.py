"""The cost model's shape (ecco_core.estimates): what grows with what, and no fixed term that swamps the work.

Timing targets live in bench/estimates.py (measured / estimated per case); these tests check only the model."""

from ecco_core import estimates

FFN = [1536] * 30  # the causal default's FFN activations


def test_small_similarity_matrices_are_not_announced_as_minutes():
    """#31 item 6: a fixed 0.02 s per pair of layers (measured while each LAPACK call waited for a second BLAS
    thread) announced 18 s for a 31 x 30 CCA matrix over 56 positions that ran in 0.13 s on a quiet machine and
    0.6-0.8 s at load 16. On one thread the calls cost a fraction of a millisecond."""
    for method in ("cca", "svcca", "pwcca", "cka"):
        small = estimates.similarity_seconds(56, FFN, FFN, method)
        assert small < 5.0, (method, small)
        # Still the work's shape: more positions and more pairs cost more.
        assert estimates.similarity_seconds(545, FFN, FFN, method) > small
        assert estimates.similarity_seconds(56, FFN + FFN, FFN, method) > small


def test_layer_comparison_estimates_price_what_the_page_runs(lm):
    """compare_layers over texts adds the model's passes keeping both representations (once when they are the
    same); a cell's chance baseline is its shuffles plus, over texts, the pass that gathers its two layers."""
    hidden, ffn = [lm.d_model] * (lm.n_layers + 1), [lm.d_ff] * lm.n_layers
    on_capture = estimates.compare_layers_seconds(lm, 200, "cka", rows="hidden", columns="ffn")
    assert on_capture == estimates.similarity_seconds(200, hidden, ffn, "cka")
    pooled = estimates.compare_layers_seconds(lm, 200, "cka", rows="hidden", columns="ffn", texts=True)
    assert pooled == on_capture + estimates.corpus_seconds(lm, 200, sum(hidden) + sum(ffn))
    same = estimates.compare_layers_seconds(lm, 200, "cca", rows="ffn", columns="ffn", texts=True)
    assert same == estimates.similarity_seconds(200, ffn, ffn, "cca") + estimates.corpus_seconds(lm, 200, sum(ffn))
    one = estimates.similarity_seconds(150, [lm.d_model], [lm.d_ff], "cka", "rbf")
    cell = estimates.cell_baseline_seconds(lm, 150, "cka", kernel="rbf", n_permutations=10)
    assert cell == 10 * one
    assert estimates.cell_baseline_seconds(lm, 150, "cka", kernel="rbf", n_permutations=10, corpus_tokens=200) == (
        cell + estimates.corpus_seconds(lm, 200, lm.d_model + lm.d_ff))
